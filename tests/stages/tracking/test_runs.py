import re
import socket
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from csra.errors import CSRAError
from stages.tracking import runs, store
from stages.tracking.execution import EXECUTION, EXECUTION_SHOWN


def test_repo_root_sees_through_dvc_temp_workspaces(tmp_path):
    workspace = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    workspace.mkdir(parents=True)
    assert store.repo_root(workspace) == (tmp_path / "repo").resolve()
    assert store.repo_root(tmp_path / "repo") == (tmp_path / "repo").resolve()


def test_default_store_is_mlflow_db_at_the_root_and_env_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert store.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert store.tracking_uri() == "http://127.0.0.1:5000"


def test_sqlite_artifacts_live_next_to_the_database(tmp_path):
    location = store._artifact_location(f"sqlite:///{tmp_path / 'x.db'}")
    assert location == (tmp_path.resolve() / "mlartifacts").as_uri()
    assert store._artifact_location("http://127.0.0.1:5000") is None
    assert Path(location[len("file://"):]).parent == tmp_path.resolve()


@pytest.mark.parametrize("interval, sampled", [(0, False), (0.1, True)])
def test_system_metrics_are_sampled_only_with_an_interval(mlflow_store, monkeypatch, interval, sampled):
    """tracking.system_metrics: 0 turns the sampling off (the positive case shows the test would see it)."""
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")  # restored after the test
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    with runs.training_run("csra", {}, "t", system_metrics=interval) as recorder:
        time.sleep(1.5)
    logged = mlflow.get_run(recorder.run_id).data.metrics
    assert any(name.startswith("system/") for name in logged) == sampled, logged


def test_a_retry_after_a_failed_run_gets_a_name_of_its_own(mlflow_store):
    with pytest.raises(RuntimeError), runs.training_run("csra", {}, "synthetic-resnet18-a1b2c3d") as failed:
        raise RuntimeError("killed")
    with runs.training_run("csra", {}, "synthetic-resnet18-a1b2c3d") as retry:
        pass
    with runs.training_run("csra", {}, "synthetic-resnet18-a1b2c3d") as third:
        pass
    infos = [mlflow.get_run(r.run_id).info for r in (failed, retry, third)]
    assert [(r.run_name, r.status) for r in infos] == [("synthetic-resnet18-a1b2c3d", "FAILED"),
                                                      ("synthetic-resnet18-a1b2c3d-2", "FINISHED"),
                                                      ("synthetic-resnet18-a1b2c3d-3", "FINISHED")]


def test_each_stage_says_in_one_line_what_it_did_in_the_runs_description(mlflow_store):
    with runs.training_run("csra", {}, "t") as recorder:
        recorder.describe("train", "resnet18 on synthetic")
        recorder.describe("evaluate", "test mAP 50.00\non test.json; 16 images")
        recorder.describe("train", "resnet18 on synthetic: best val mAP 60.00")  # said again: replaced in place
    note = mlflow.get_run(recorder.run_id).data.tags[runs.NOTE]
    assert note == "train: resnet18 on synthetic: best val mAP 60.00; evaluate: test mAP 50.00 on test.json, 16 images"


def test_a_run_says_which_execution_it_belongs_to_in_words_and_groups_by_a_hidden_key(mlflow_store):
    with runs.training_run("csra", {}, "t") as recorder:
        pass
    tags = mlflow.get_run(recorder.run_id).data.tags
    assert tags[EXECUTION] == runs.execution_id() and EXECUTION.startswith("mlflow.")
    assert re.fullmatch(rf"\S+ .*\(pid \d+ on {re.escape(socket.gethostname())}, started \d{{4}}-\d\d-\d\d "
                        r"\d\d:\d\d:\d\d\)", tags[EXECUTION_SHOWN]), tags[EXECUTION_SHOWN]
    assert "csra.execution" not in tags


def test_a_refused_user_is_named_from_the_credentials_file_without_the_environment(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text("[mlflow]\nmlflow_tracking_username = alice\n"
                                                      "mlflow_tracking_password = secret\n")
    with pytest.raises(CSRAError, match="refused user 'alice' \\(403 permission denied\\): the user may not "
                                        "register versions"):
        with store.store_errors("register versions"):
            raise MlflowException("no", error_code=PERMISSION_DENIED)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")  # the environment comes first
    assert "refused user 'bob' (401 unauthenticated)" in str(store.refused(401, "log runs"))


def test_without_its_training_run_the_data_digest_is_that_of_the_checkpoints_prepared_folder(tmp_path, monkeypatch):
    """dvc.lock's hash of the folder the checkpoint says it was trained on, not of the default data/prepared."""
    monkeypatch.chdir(tmp_path)
    lock = {"stages": {"prepare": {"outs": [{"path": "data/prepared", "md5": "default.dir"},
                                            {"path": "data/voc", "md5": "voc.dir"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    saved = {"params": {"data.prepared_dir": "data/voc", "train.recipe": "voc07"}, "recipe": {"lam": 0.1}}
    tags, params = runs.workspace_provenance(Path("results/train/best.pt"), "abc", saved)
    assert tags[runs.DATA_DIGEST] == "voc.dir" and tags["recipe"] == "voc07"
    assert params == {"train.lam": 0.1, "data.prepared_dir": "data/voc", "train.recipe": "voc07"}
