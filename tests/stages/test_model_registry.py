"""The registered model's records: export reads the evaluation of its own execution, else of the training run it
builds on. (Which versions are registered and which is champion: test_registration.py.)"""

import mlflow

from stages import model_registry, tracking


def test_export_reads_its_own_executions_evaluation_before_the_training_runs(mlflow_store):
    mlflow.set_tracking_uri(mlflow_store)
    with tracking.training_run("csra", {}, "t") as trained:
        trained.metrics({"mAP": 50.0})
        trained.tag(tracking.TEST_FILE, "old/test.json")
        trained.tag(tracking.TEST_DIGEST, "test-old")
    with mlflow.start_run(run_name="later execution") as run:
        mlflow.log_metrics({"mAP": 80.0})
        mlflow.set_tags({tracking.TEST_FILE: "new/test.json", tracking.TEST_DIGEST: "test-new"})
    ours = model_registry.evaluation(tracking.Recorder(mlflow, run.info.run_id, trained.train_run_id))
    assert ours == model_registry.Evaluation({"mAP": 80.0}, "new/test.json", "test-new")
    with mlflow.start_run(run_name="not evaluated") as bare:
        pass
    inherited = model_registry.evaluation(tracking.Recorder(mlflow, bare.info.run_id, trained.train_run_id))
    assert inherited == model_registry.Evaluation({"mAP": 50.0}, "old/test.json", "test-old")
