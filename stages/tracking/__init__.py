"""The MLflow side of the stages, the only code that imports mlflow: the store, the runs, the registered model."""
