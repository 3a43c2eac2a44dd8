"""The one place that talks to MLflow: tracking URI, the pipeline's run, params, metrics and artifacts.

One MLflow run per pipeline run: train opens it and writes its id to a stage output (run.json); evaluate and demo
log into the same run. Default store: SQLite `mlflow.db` at the repository root, as an absolute path, so that
`dvc exp run --temp/--queue` workspaces (under .dvc/tmp/exps/) log into the same database. MLFLOW_TRACKING_URI
overrides it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from csra.errors import CSRAError
from csra.fileio import write_json

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


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _run_tags() -> dict[str, str]:
    tags = {}
    commit = _git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    for env, tag in (("DVC_EXP_NAME", "dvc.exp_name"), ("DVC_EXP_BASELINE_REV", "dvc.baseline_rev")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


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


@contextmanager
def training_run(experiment: str, params: dict[str, Any], run_file: Path, run_id: str | None = None
                 ) -> Iterator[Recorder]:
    """Open the pipeline's run (train), log params and tags, record its id in run_file; yields its Recorder.
    With run_id (a resumed training), that run is reopened: its params are already logged."""
    mlflow = _mlflow()
    experiment_id = _experiment_id(mlflow, experiment)
    if run_id is not None:
        with mlflow.start_run(run_id=run_id) as run:
            write_json(run_file, {"run_id": run.info.run_id, "experiment": experiment}, indent=2)
            yield Recorder(mlflow, run.info.run_id)
        return
    with mlflow.start_run(experiment_id=experiment_id, run_name=os.environ.get("DVC_EXP_NAME")) as run:
        mlflow.set_tags(_run_tags())
        mlflow.log_params(params)
        write_json(run_file, {"run_id": run.info.run_id, "experiment": experiment}, indent=2)
        yield Recorder(mlflow, run.info.run_id)


@contextmanager
def continued_run(run_file: Path, params: dict[str, Any]) -> Iterator[Recorder]:
    """Log into the run that train recorded in run_file (evaluate, demo, export); yields its Recorder.

    A param that the run already holds with another value (a stage re-run with new settings) cannot be changed
    in MLflow: its new value is recorded as a tag 'changed.<key>' and a warning says so.
    """
    if not run_file.is_file():
        raise CSRAError(f"{run_file}: no MLflow run recorded; run the train stage first")
    try:
        info = json.loads(run_file.read_text())
        run_id, experiment = info["run_id"], info["experiment"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise CSRAError(f"{run_file}: expected {{'run_id', 'experiment'}} written by the train stage") from None
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException

    try:
        existing = mlflow.get_run(run_id).data.params
    except MlflowException:
        print(f"warning: MLflow run {run_id} is not in {tracking_uri()}; logging to a new run")
        with mlflow.start_run(experiment_id=_experiment_id(mlflow, experiment)) as run:
            mlflow.set_tags(_run_tags())
            mlflow.log_params(params)
            yield Recorder(mlflow, run.info.run_id)
        return
    with mlflow.start_run(run_id=run_id):
        fresh = {k: v for k, v in params.items() if k not in existing}
        changed = {k: v for k, v in params.items() if k in existing and existing[k] != str(v)}
        mlflow.log_params(fresh)
        for key, value in changed.items():
            print(f"warning: MLflow run already has {key}={existing[key]}; new value {value} logged as a tag")
            mlflow.set_tag(f"changed.{key}", str(value))
        yield Recorder(mlflow, run_id)


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
