"""A search's runs by id, outside any active run: the study's parent run (made, reopened, tagged, ended, or left
open while trials of other workers run) and the end of a trial's run whose worker stopped."""

from __future__ import annotations

from typing import Any

from mlflow.entities import Param
from mlflow.exceptions import MlflowException

from stages.tracking.execution import unique_name
from stages.tracking.store import connect, experiment_of


def create_parent(experiment: str, name: str, tags: dict[str, str], params: dict[str, Any],
                  record: dict[str, Any], record_file: str) -> str:
    """The id of a new run of experiment named name (made unique there), with tags, params and record as the JSON
    artifact record_file; left running (end closes it)."""
    mlflow = connect()
    client = mlflow.MlflowClient()
    experiment_id = experiment_of(mlflow, experiment)
    run_id = client.create_run(experiment_id, run_name=unique_name(mlflow, experiment_id, name), tags=tags).info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    client.log_dict(run_id, record, record_file)
    return run_id


def reopen(run_id: str) -> bool:
    """Mark the run running again; False when the store has no such run."""
    try:
        connect().MlflowClient().update_run(run_id, status="RUNNING")
    except MlflowException:
        return False
    return True


def set_tags(run_id: str, tags: dict[str, str]) -> None:
    """Tag the run, one tag after the other in tags' order."""
    client = connect().MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def log_metric(run_id: str, key: str, value: float, step: int) -> None:
    """Log one value of the run's metric key at step."""
    connect().MlflowClient().log_metric(run_id, key, value, step=step)


def end(run_id: str, status: str) -> None:
    """End the run with this status (FINISHED, FAILED, KILLED)."""
    connect().MlflowClient().set_terminated(run_id, status)
