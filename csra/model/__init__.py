"""The model: CSRA heads (the paper), backbones, the zoo, weight layouts and checkpoints."""
