"""The `csra` command line: one Typer command per DVC stage, and the one place that talks to MLflow."""
