"""The registered model's versions: one registered model per dataset by default, a version when asked or when it
beats the best on the same test data (never twice the same logged model), tagged with where it comes from and
described dataset and score first, and the alias champion on the best version evaluated on the same test data,
which never leaves a version evaluated on other test data."""

import mlflow
import pytest
from mlflow import MlflowClient

from csra.evaluate import metrics
from stages.tracking import registration, registry, runs
from stages.tracking.lineage import DataVersion

BASELINE = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def export(tmp_path, monkeypatch, mlflow_store):
    """export(policy, mAP, digest) registers a fresh logged model of a run evaluated at mAP on test file digest,
    as `csra export` does; returns (what the run records as export/registration.json, the recorder)."""
    monkeypatch.setenv("DVC_EXP_NAME", "lucky-lion")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", BASELINE)
    mlflow.set_tracking_uri(mlflow_store)

    def run(policy, mAP, digest="test-a", model_id=None, name="csra"):
        with runs.training_run("csra", {"train.lam": 0.1}, "t") as recorder:
            recorder.dataset(DataVersion("synthetic", "data/prepared", "f49cb5c7.dir", {"test.json": 4}), "training")
            recorder.metrics({"mAP": mAP, "CF1": mAP - 10})
            recorder.tag(runs.TEST_FILE, "data/prepared/test.json")
            recorder.tag(runs.TEST_DIGEST, digest)
            model_id = model_id or mlflow.create_external_model(name="model").model_id
            return registration.register(recorder, model_id, name, policy, "mAP", "synthetic", "resnet18, tiny",
                                         registry.evaluation(recorder)), recorder

    return run


def test_better_registers_only_what_beats_the_champion_and_always_registers_anyway(export):
    first, recorder = export("better", 70.0)
    assert (first["version"], first["champion"], first["registered"]) == ("1", "1", "registered")
    assert first["model_uri"] == "models:/csra/1" and first["logged_model"].startswith("models:/m-")
    worse, _ = export("better", 60.0)
    assert worse["version"] is None and worse["champion"] == "1"
    assert worse["registered"] == ("not registered: mAP 60.00 does not beat version 1 (70.00), the best on this "
                                   "test data")
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


def test_the_champion_never_leaves_a_version_evaluated_on_other_test_data(export):
    first, _ = export("better", 90.0, digest="test-a")
    assert first["champion_stays"] is None
    other, _ = export("better", 50.0, digest="test-b")  # nothing to beat on test-b: registered, not champion
    assert (other["version"], other["champion"]) == ("2", "1")
    assert other["champion_stays"] == (
        "champion stays on version 1, evaluated on other test data (test.json, digest test-a; this model: "
        "test.json, digest test-b): give this data a registered model of its own (export.registered_model: auto "
        "names csra-<data.dataset>), or move the alias by hand")
    better, _ = export("better", 95.0, digest="test-b")  # better than the champion's score, on other data
    assert (better["version"], better["champion"]) == ("3", "1") and better["champion_stays"]
    back, _ = export("better", 85.0, digest="test-a")  # compared with the best on test-a, version 1
    assert back["version"] is None and "does not beat version 1 (90.00)" in back["registered"]
    assert back["champion"] == "1" and back["champion_stays"] is None
    assert str(MlflowClient().get_model_version_by_alias("csra", "champion").version) == "1"


def test_the_champion_moves_to_a_better_version_on_the_same_test_data(export):
    export("always", 70.0, digest="test-a")
    export("always", 60.0, digest="test-a")
    MlflowClient().set_registered_model_alias("csra", "champion", "2")  # moved by hand to the worse one
    best, _ = export("always", 65.0, digest="test-a")
    assert (best["version"], best["champion"], best["champion_stays"]) == ("3", "1", None)


def test_auto_names_one_registered_model_per_dataset_and_a_given_name_stays(export):
    assert registration.model_name("auto", "voc07") == "csra-voc07"
    assert registration.model_name("my-model", "voc07") == "my-model"
    synthetic, _ = export("better", 96.6, digest="test-a", name=registration.model_name("auto", "synthetic"))
    voc, _ = export("better", 19.0, digest="test-b", name=registration.model_name("auto", "voc07"))
    assert (synthetic["model_uri"], synthetic["champion"]) == ("models:/csra-synthetic/1", "1")
    assert (voc["model_uri"], voc["champion"], voc["champion_stays"]) == ("models:/csra-voc07/1", "1", None)


def test_without_an_evaluation_better_does_not_register(export, tmp_path):
    with runs.training_run("csra", {}, "t") as recorder:
        model_id = mlflow.create_external_model(name="model").model_id
        result = registration.register(recorder, model_id, "csra", "better", "mAP", "synthetic", "resnet18, tiny",
                                       registry.evaluation(recorder))
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


def test_a_lower_is_better_metric_elects_and_registers_the_lowest(export, monkeypatch):
    monkeypatch.setitem(metrics.METRICS, "mAP", metrics.LOWER)  # as if mAP were declared lower-is-better
    export("better", 70.0)
    higher, _ = export("better", 80.0)
    assert higher["version"] is None and higher["champion"] == "1"
    assert higher["registered"].startswith("not registered: mAP 80.00 does not beat version 1 (70.00)")
    kept, _ = export("always", 90.0)
    assert (kept["version"], kept["champion"]) == ("2", "1")
    lower, _ = export("better", 60.0)
    assert (lower["version"], lower["champion"]) == ("3", "3")


def test_the_model_and_each_version_say_what_they_are_dataset_and_score_first(export):
    export("always", 70.0, digest="1a2b3c4d5e6f")
    client = MlflowClient()
    assert client.get_registered_model("csra").description == registration.MODEL_DESCRIPTION
    version = client.get_model_version("csra", "1")
    assert version.description == ("synthetic, test mAP 70.00 (test.json, digest 1a2b3c4d): resnet18, tiny. Serve "
                                   "it: mlflow models serve -m models:/csra/1 --env-manager local --port 5001")
