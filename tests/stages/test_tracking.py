import time
from pathlib import Path

import mlflow
import pytest

from stages import tracking


def test_repo_root_sees_through_dvc_temp_workspaces(tmp_path):
    workspace = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    workspace.mkdir(parents=True)
    assert tracking.repo_root(workspace) == (tmp_path / "repo").resolve()
    assert tracking.repo_root(tmp_path / "repo") == (tmp_path / "repo").resolve()


def test_default_store_is_mlflow_db_at_the_root_and_env_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"


def test_sqlite_artifacts_live_next_to_the_database(tmp_path):
    location = tracking._artifact_location(f"sqlite:///{tmp_path / 'x.db'}")
    assert location == (tmp_path.resolve() / "mlartifacts").as_uri()
    assert tracking._artifact_location("http://127.0.0.1:5000") is None
    assert Path(location[len("file://"):]).parent == tmp_path.resolve()


@pytest.mark.parametrize("interval, sampled", [(0, False), (0.1, True)])
def test_system_metrics_are_sampled_only_with_an_interval(mlflow_store, monkeypatch, interval, sampled):
    """tracking.system_metrics: 0 turns the sampling off (the positive case shows the test would see it)."""
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")  # restored after the test
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    with tracking.training_run("csra", {}, "t", system_metrics=interval) as recorder:
        time.sleep(1.5)
    logged = mlflow.get_run(recorder.run_id).data.metrics
    assert any(name.startswith("system/") for name in logged) == sampled, logged
