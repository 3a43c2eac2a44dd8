"""The one place that talks to MLflow: the store, one run per pipeline execution, params, metrics, artifacts.

Train opens its execution's run and writes its id beside the checkpoint (run.json). A stage after train logs into
the training run when train ran in the same execution (one `dvc repro`), else into a run of its own execution,
linked to the training run (stages/execution.py says which execution a stage runs in). Default store: SQLite
`mlflow.db` at the repository root, as an absolute path, so that `dvc exp run --temp/--queue` workspaces (under
.dvc/tmp/exps/) log into the same database. MLFLOW_TRACKING_URI overrides it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from csra.errors import CSRAError
from csra.fileio import write_json
from stages.execution import execution_id, run_tags

DVC_TEMP_WORKSPACES = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep


def repo_root(cwd: Path | None = None) -> Path:
    """The repository root, seen through a DVC temporary experiment workspace if we run inside one."""
    cwd = (cwd or Path.cwd()).resolve()
    text = str(cwd) + os.sep
    if DVC_TEMP_WORKSPACES in text:
        return Path(text.split(DVC_TEMP_WORKSPACES)[0])
    return cwd


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store go next to its file; other stores decide for themselves."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    return None


def _mlflow() -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    warnings.filterwarnings("ignore", module="mlflow")
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    return mlflow


def _experiment_id(mlflow: Any, name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=_artifact_location(mlflow.get_tracking_uri()))


class Recorder:
    """The active MLflow run, through the few calls the stages make."""

    def __init__(self, mlflow: Any, run_id: str):
        self.mlflow, self.run_id = mlflow, run_id

    def metrics(self, values: dict[str, float], step: int | None = None) -> None:
        """Log metrics; NaN values (an undefined metric) are left out."""
        self.mlflow.log_metrics({k: v for k, v in values.items() if not math.isnan(v)}, step=step)

    def tag(self, key: str, value: str) -> None:
        self.mlflow.set_tag(key, value)

    def artifact(self, path: Path, folder: str | None = None) -> None:
        self.mlflow.log_artifact(str(path), folder)

    def artifacts(self, path: Path, folder: str) -> None:
        self.mlflow.log_artifacts(str(path), folder)

    def checkpoint(self, path: Path, where: Path) -> None:
        """Say which checkpoint this run made without storing its bytes a second time (DVC keeps it): where it
        lives and its MD5, the key of DVC's cache (`.dvc/cache/files/md5/<first 2>/<rest>`)."""
        digest = hashlib.md5()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        self.mlflow.set_tags({"checkpoint": str(where), "checkpoint.md5": digest.hexdigest()})


@contextmanager
def _reachable() -> Iterator[None]:
    """A store that cannot be reached (a team server down, a database locked) is one line, not a traceback."""
    try:
        yield
    except CSRAError:
        raise
    except Exception as e:
        from mlflow.exceptions import MlflowException

        if isinstance(e, (MlflowException, ConnectionError, OSError)) or "sqlalchemy" in type(e).__module__:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CSRAError(f"MLflow tracking store {tracking_uri()}: {first}") from None
        raise


@contextmanager
def training_run(experiment: str, params: dict[str, Any], run_file: Path, name: str,
                 run_id: str | None = None) -> Iterator[Recorder]:
    """Open this execution's run for train: a new run with every param, the execution's tags and name, its id
    recorded in run_file; yields its Recorder. With run_id (a resumed training) that interrupted run is reopened
    and marked with this execution, so the stages after train join it."""
    mlflow = _mlflow()
    with _reachable():
        experiment_id = _experiment_id(mlflow, experiment)
        started = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(experiment_id=experiment_id,
                                                                                   run_name=name)
        with started as run:
            mlflow.set_tags({**run_tags(), "csra.execution": execution_id()})
            if run_id is None:
                mlflow.log_params(params)
            write_json(run_file, {"run_id": run.info.run_id, "experiment": experiment}, indent=2)
            yield Recorder(mlflow, run.info.run_id)


def _training_run_id(run_file: Path) -> tuple[str, str] | None:
    """(run id, experiment) that train recorded next to its checkpoint, or None."""
    if not run_file.is_file():
        return None
    try:
        info = json.loads(run_file.read_text(encoding="utf-8"))
        return info["run_id"], info["experiment"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise CSRAError(f"{run_file}: expected {{'run_id', 'experiment'}} written by the train stage") from None


@contextmanager
def stage_run(run_file: Path | None, experiment: str, params: dict[str, Any], name: str) -> Iterator[Recorder]:
    """This execution's run for a stage after train (evaluate, demo, export): the training run if train ran in
    this same execution; else this execution's own run — found by its tag, or created with every param and
    linked to the training run it builds on (tag csra.train_run_id, nested under it). Another execution's run is
    never changed."""
    mlflow = _mlflow()
    execution = execution_id()
    trained = _training_run_id(run_file) if run_file is not None else None
    with _reachable():
        experiment_id = _experiment_id(mlflow, trained[1] if trained else experiment)
        run_id = _execution_run(mlflow, experiment_id, execution, trained[0] if trained else None)
        started = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(experiment_id=experiment_id,
                                                                                   run_name=name)
        with started as run:
            if run_id is None:
                links = {"csra.train_run_id": trained[0], "mlflow.parentRunId": trained[0]} if trained else {}
                mlflow.set_tags({**run_tags(), "csra.execution": execution, **links})
                mlflow.log_params(params)
            yield Recorder(mlflow, run.info.run_id)


def _execution_run(mlflow: Any, experiment_id: str, execution: str, train_run_id: str | None) -> str | None:
    """The id of this execution's run: the training run when it carries this execution's tag, else a run of
    this execution built on the same training run; None when there is none yet."""
    if train_run_id is not None:
        try:
            if mlflow.get_run(train_run_id).data.tags.get("csra.execution") == execution:
                return train_run_id
        except mlflow.exceptions.MlflowException:
            train_run_id = None  # not in this store: the new run stands alone
    query = f"tags.`csra.execution` = '{execution}'"
    if train_run_id is not None:
        query += f" and tags.`csra.train_run_id` = '{train_run_id}'"
    found = mlflow.search_runs([experiment_id], filter_string=query, output_format="list", max_results=1)
    return found[0].info.run_id if found else None


def log_scoring_model(
    recorder: Recorder, scoring: Any, example: Any, num_classes: int, registered_model: str, metadata: dict[str, Any]
) -> dict[str, str]:
    """Log the scoring module (uint8 images in, scores out) to the active run as an MLflow PyTorch model in the
    'pt2' format (a torch.export program: no pickled code), with its signature and input example, and register it
    under `registered_model`. Returns {name, version, model_uri} of the registered version."""
    import numpy as np
    import torch
    from mlflow.models import ModelSignature

    mlflow = recorder.mlflow
    from mlflow.types.schema import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, 3, -1, -1))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes))]),
    )
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                    f"numpy=={np.__version__}"]
    info = mlflow.pytorch.log_model(
        scoring, name="model", signature=signature, input_example=example, serialization_format="pt2",
        registered_model_name=registered_model, pip_requirements=requirements, metadata=metadata,
    )
    version = str(info.registered_model_version)
    return {"name": registered_model, "version": version, "model_uri": f"models:/{registered_model}/{version}"}
