"""The registered model: a version when asked or when it beats the champion (never twice the same logged model),
tagged with where it comes from, and the alias champion on the best version evaluated on the same test file."""

import mlflow
import pytest
from mlflow import MlflowClient

from stages import model_registry, tracking
from stages.lineage import DataVersion

BASELINE = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def export(tmp_path, monkeypatch, mlflow_store):
    """export(policy, mAP, digest) registers a fresh logged model of a run evaluated at mAP on test file digest,
    as `csra export` does; returns (what the run records as export/registration.json, the recorder)."""
    monkeypatch.setenv("DVC_EXP_NAME", "lucky-lion")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", BASELINE)
    mlflow.set_tracking_uri(mlflow_store)

    def run(policy, mAP, digest="test-a", model_id=None):
        with tracking.training_run("csra", {"train.lam": 0.1}, "t") as recorder:
            recorder.dataset(DataVersion("synthetic", "data/prepared", "f49cb5c7.dir", {"test.json": 4}), "training")
            recorder.metrics({"mAP": mAP, "CF1": mAP - 10})
            recorder.tag(tracking.TEST_FILE, "data/prepared/test.json")
            recorder.tag(tracking.TEST_DIGEST, digest)
            model_id = model_id or mlflow.create_external_model(name="model").model_id
            return model_registry.register(recorder, model_id, "csra", policy, "mAP", "resnet18, tiny",
                                           model_registry.evaluation(recorder)), recorder

    return run


def test_better_registers_only_what_beats_the_champion_and_always_registers_anyway(export):
    first, recorder = export("better", 70.0)
    assert (first["version"], first["champion"], first["registered"]) == ("1", "1", "registered")
    assert first["model_uri"] == "models:/csra/1" and first["logged_model"].startswith("models:/m-")
    worse, _ = export("better", 60.0)
    assert worse["version"] is None and worse["champion"] == "1"
    assert worse["registered"] == ("not registered: mAP 60.00 does not beat version 1 (70.00), the best on this "
                                   "test file")
    kept, _ = export("always", 65.0)
    assert (kept["version"], kept["champion"]) == ("2", "1")  # registered, but not the best
    best, _ = export("better", 80.0)
    assert (best["version"], best["champion"]) == ("3", "3")
    again, _ = export("always", 80.0, model_id=best["logged_model"][len("models:/"):])
    assert (again["version"], again["registered"]) == ("3", "already registered")
    never, _ = export("never", 99.0)
    assert never["version"] is None and never["champion"] == "3"
    assert str(MlflowClient().get_model_version_by_alias("csra", "champion").version) == "3"

    tags = MlflowClient().get_model_version("csra", "1").tags
    assert tags["test.metrics"] == '{"mAP": 70.0, "CF1": 60.0}'  # the metrics in one tag, mAP first
    assert not {"mAP", "CF1"} & set(tags) and tags["test.digest"] == "test-a"
    assert tags["test.file"] == "data/prepared/test.json" and tags["dataset.digest"] == "f49cb5c7.dir"
    assert tags["dvc.exp_name"] == "lucky-lion" and tags["dvc.exp_ref"] == f"refs/exps/01/{BASELINE[2:]}/lucky-lion"
    assert len(tags["mlflow.source.git.commit"]) == 40 and tags["run_id"] == recorder.run_id


def test_versions_of_another_test_file_are_not_compared(export):
    export("better", 90.0, digest="test-a")
    other, _ = export("better", 50.0, digest="test-b")  # nothing to beat on test-b: registered, and its champion
    assert (other["version"], other["champion"]) == ("2", "2")
    back, _ = export("better", 85.0, digest="test-a")  # compared with the best on test-a, version 1
    assert back["version"] is None and "does not beat version 1 (90.00)" in back["registered"]
    assert back["champion"] == "1"  # the champion is the best on the test file the pipeline now scores


def test_without_an_evaluation_better_does_not_register(export, tmp_path):
    with tracking.training_run("csra", {}, "t") as recorder:
        model_id = mlflow.create_external_model(name="model").model_id
        result = model_registry.register(recorder, model_id, "csra", "better", "mAP", "resnet18, tiny",
                                         model_registry.evaluation(recorder))
    assert result["version"] is None and result["champion"] is None
    assert result["registered"].startswith("not registered: this execution logged no mAP")


def test_on_a_tie_the_older_version_keeps_the_champion_alias(export):
    export("better", 70.0)
    tied, _ = export("always", 70.0)
    assert (tied["version"], tied["champion"]) == ("2", "1")
    assert str(MlflowClient().get_model_version_by_alias("csra", "champion").version) == "1"


def test_better_does_not_register_a_version_that_only_equals_the_best(export):
    export("better", 70.0)
    equal, _ = export("better", 70.0)
    assert equal["version"] is None and equal["champion"] == "1"
    assert equal["registered"].startswith("not registered: mAP 70.00 does not beat version 1 (70.00)")
    assert [str(v.version) for v in MlflowClient().search_model_versions("name = 'csra'")] == ["1"]


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


def test_the_model_and_each_version_say_what_they_are_and_how_to_serve_them(export):
    export("always", 70.0)
    client = MlflowClient()
    assert client.get_registered_model("csra").description == model_registry.MODEL_DESCRIPTION
    version = client.get_model_version("csra", "1")
    assert version.description == ("resnet18, tiny. Test mAP 70.00 on data/prepared/test.json. Serve it: mlflow "
                                   "models serve -m models:/csra/1 --env-manager local --port 5001")
