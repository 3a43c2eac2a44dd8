"""Training: the recipe, optimisation, losses, the loop that owns a run, resumable state and DDP."""
