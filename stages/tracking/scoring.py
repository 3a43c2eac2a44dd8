"""The MLflow run of a `csra score` job: one run per job (a collection scored is no stage of a pipeline execution),
linked to the training run of the checkpoint it scored with, or to the run of the registered version."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from stages.common import stopping
from stages.tracking.execution import run_tags, unique_name
from stages.tracking.runs import Recorder, training_run_by_md5
from stages.tracking.store import connect, experiment_of, store_errors


class ScoreRecorder(Recorder):
    """A Recorder with the job's params."""

    def params(self, values: dict[str, Any]) -> None:
        self.send({"op": "log", "params": [[k, str(v)] for k, v in values.items()]})


@contextmanager
def score_run(experiment: str, model: str, identity: dict[str, str]) -> Iterator[ScoreRecorder]:
    """A new run named score-…, tagged with the model (identity: the checkpoint and its MD5, or the models:/ URI
    and the version it resolved to) and linked to the run that made the model when the store has it; it ends
    FINISHED, FAILED, or KILLED when a signal stopped the job."""
    mlflow = connect()
    client = mlflow.MlflowClient()
    with store_errors(f"log runs to the experiment '{experiment}'"):
        experiment_id = experiment_of(mlflow, experiment)
        links: dict[str, str] = {}
        if "checkpoint.md5" in identity:
            trained = training_run_by_md5(mlflow, identity["checkpoint.md5"], execution="")
            if trained is not None:
                links = {"csra.train_run_id": trained.info.run_id}
        elif "csra.model_version" in identity:
            name, version = identity["csra.model_version"][len("models:/"):].rsplit("/", 1)
            source = client.get_model_version(name, version).run_id
            if source:
                links = {"csra.model_run_id": source}
        tags = {**run_tags(), **identity, **links}
        run_id = client.create_run(experiment_id, run_name=unique_name(mlflow, experiment_id, "score"),
                                   tags=tags).info.run_id
    recorder = ScoreRecorder(mlflow, run_id, links.get("csra.train_run_id"))
    status = "FINISHED"
    try:
        yield recorder
    except BaseException as e:
        status = "KILLED" if stopping(e) else "FAILED"
        raise
    finally:
        with store_errors(f"end the run {run_id}"):
            client.set_terminated(run_id, status)
