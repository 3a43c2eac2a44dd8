"""The registered model's records: export reads the evaluation of its own execution, else of the training run it
builds on; a version's metrics keep 4 places, and one registered before the test.metrics tag is read from its own
tag; a run without its training run in the store still gives its version its commit and data digest. (Which
versions are registered and which is champion: test_registration.py.)"""

from types import SimpleNamespace

import mlflow

from stages.tracking import registry, runs


def test_export_reads_its_own_executions_evaluation_before_the_training_runs(mlflow_store):
    mlflow.set_tracking_uri(mlflow_store)
    with runs.training_run("csra", {}, "t") as trained:
        trained.metrics({"mAP": 50.0})
        trained.tag(runs.TEST_FILE, "old/test.json")
        trained.tag(runs.TEST_DIGEST, "test-old")
    with mlflow.start_run(run_name="later execution") as run:
        mlflow.log_metrics({"mAP": 80.0})
        mlflow.set_tags({runs.TEST_FILE: "new/test.json", runs.TEST_DIGEST: "test-new"})
    ours = registry.evaluation(runs.Recorder(mlflow, run.info.run_id, trained.train_run_id))
    assert ours == registry.Evaluation({"mAP": 80.0}, "new/test.json", "test-new")
    with mlflow.start_run(run_name="not evaluated") as bare:
        pass
    inherited = registry.evaluation(runs.Recorder(mlflow, bare.info.run_id, trained.train_run_id))
    assert inherited == registry.Evaluation({"mAP": 50.0}, "old/test.json", "test-old")


def test_close_versions_keep_4_places_and_an_older_version_is_read_from_its_own_tag():
    close = [SimpleNamespace(tags=registry.Evaluation({"mAP": m}, "test.json", "d").tags())
             for m in (70.1234, 70.1211)]
    assert [registry.version_metric(v, "mAP") for v in close] == [70.1234, 70.1211]  # no tie at 70.12
    before_the_tag = SimpleNamespace(tags={"mAP": "65.4321", runs.TEST_DIGEST: "d"})
    assert registry.version_metric(before_the_tag, "mAP") == 65.4321
    assert registry.version_metric(before_the_tag, "CF1") is None


def test_a_run_without_its_training_run_gives_its_commit_experiment_and_data_digest(mlflow_store):
    mlflow.set_tracking_uri(mlflow_store)
    recorded = {"mlflow.source.git.commit": "0123456789abcdef0123456789abcdef01234567", "dvc.exp_name": "lucky-lion",
                runs.DATA_DIGEST: "f49cb5c7.dir", runs.UNTRACED: "not in this store"}
    with mlflow.start_run(run_name="export of a pulled model") as run:
        mlflow.set_tags({**recorded, "checkpoint.md5": "abc"})
    assert registry.provenance(runs.Recorder(mlflow, run.info.run_id, None)) == recorded
