"""The registered model, MLflow's side of export: the scoring program logged once per trained model, what a version
is tagged with (its evaluation and provenance), and a models:/ URI read back (the program file and its metadata).
Which versions are registered and which is the champion: registration.py. MLflow code, beside tracking.py."""

from __future__ import annotations

import base64
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from csra.deploy.serving import CONTRACT_ARTIFACT, IMAGE_COLUMN, PROGRAM_ARTIFACT
from csra.errors import CSRAError, first_line
from csra.evaluate.metrics import METRIC_NAMES
from stages.lineage import DataVersion
from stages.tracking import (
    DATA_DIGEST,
    TEST_DIGEST,
    TEST_FILE,
    UNTRACED,
    Recorder,
    connect,
    refusal,
    store_errors,
)

TEST_METRICS = "test.metrics"  # on a version: evaluate's metrics on its test file, as JSON
KEY_TAG = "csra.model_key"  # on a logged model: the checkpoint and model config it was made from
PROVENANCE = ("dvc.exp_name", "dvc.exp_ref", "dvc.baseline_rev", "mlflow.source.git.commit")
SERVED_MODEL = Path(__file__).with_name("served_model.py")  # the registered model's code
PROGRAM_FILE, CONTRACT_FILE = "model.pt2", "contract.json"  # its artifacts, under artifacts/ in the model
URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))")


@dataclass(frozen=True)
class Evaluation:
    """What evaluate said of a model: its metrics and the test file's path and digest."""

    metrics: dict[str, float]
    file: str
    digest: str
    data: DataVersion | None = None  # the scored data, as evaluate logged it (the run's evaluation input)

    def tags(self) -> dict[str, str]:
        """The version's tags: its metrics in one (TEST_METRICS: JSON, evaluate's order, mAP first), the test file."""
        scores = {k: round(self.metrics[k], 4) for k in METRIC_NAMES if k in self.metrics}
        return {TEST_METRICS: json.dumps(scores), TEST_FILE: self.file, TEST_DIGEST: self.digest}


def version_metric(version: Any, metric: str) -> float | None:
    """A version's metric from its TEST_METRICS tag (or, for a version registered before that tag, its own tag)."""
    try:
        value = json.loads(version.tags.get(TEST_METRICS, "{}")).get(metric, version.tags.get(metric))
    except (ValueError, AttributeError):
        return None
    return float(value) if value is not None else None


def log_served_model(recorder: Recorder, name: str, key: str, program: bytes, contract: dict[str, Any],
                     metadata: dict[str, Any], scored: Evaluation | None) -> str:
    """The id of the logged model made from key (a checkpoint and its config): the one a run of this experiment
    logged before, else the served model logged now to the active run under name (the registered model's):
    stages/served_model.py as code (MLflow's models-from-code: no pickle) with the torch.export program and its
    contract (classes, input size, pixel limit) as artifacts, the classes as its output signature, and metadata;
    its metrics are the execution's evaluation (scored), on the data evaluate scored. One logged model per
    trained model, however often export runs."""
    import pandas as pd
    import PIL
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    mlflow = recorder.mlflow
    with store_errors(f"log the model {name} to its run's experiment"):
        experiment = mlflow.get_run(recorder.run_id).info.experiment_id
        found = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list", max_results=1,
                                            filter_string=f"tags.`{KEY_TAG}` = '{key}'")
        if found:
            return found[0].model_id
        signature = ModelSignature(inputs=None, outputs=Schema([ColSpec("float", c) for c in contract["classes"]]))
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                        f"numpy=={np.__version__}", f"pandas=={pd.__version__}", f"pillow=={PIL.__version__}"]
        with tempfile.TemporaryDirectory() as folder:
            files = {PROGRAM_ARTIFACT: Path(folder) / PROGRAM_FILE, CONTRACT_ARTIFACT: Path(folder) / CONTRACT_FILE}
            files[PROGRAM_ARTIFACT].write_bytes(program)
            files[CONTRACT_ARTIFACT].write_text(json.dumps(contract, indent=2), encoding="utf-8")
            model_id = mlflow.pyfunc.log_model(  # at no step of the run: MLflow links a step's metrics to the model
                name=name, python_model=str(SERVED_MODEL), artifacts={k: str(v) for k, v in files.items()},
                signature=signature, pip_requirements=requirements, metadata=metadata, tags={KEY_TAG: key}, step=-1,
            ).model_id
        if scored is not None:  # its metrics are the evaluation's, on the data evaluate scored
            recorder.model_metrics(model_id, scored.metrics, scored.data)
        return model_id


def evaluation(recorder: Recorder) -> Evaluation | None:
    """The evaluation of this execution's run, else of the training run it builds on (export then reports the
    metrics of the evaluate that ran with that training); None where evaluate has logged nothing."""
    for run_id in dict.fromkeys(filter(None, (recorder.run_id, recorder.train_run_id))):
        run = recorder.mlflow.get_run(run_id)
        if TEST_DIGEST in run.data.tags:
            return Evaluation({k: run.data.metrics[k] for k in METRIC_NAMES if k in run.data.metrics},
                              run.data.tags[TEST_FILE], run.data.tags[TEST_DIGEST], _scored_data(run))
    return None


def _scored_data(run: Any) -> DataVersion | None:
    """The run's evaluation input as a DataVersion, or None."""
    for item in run.inputs.dataset_inputs if run.inputs else []:
        if any(t.key == "mlflow.data.context" and t.value == "evaluation" for t in item.tags):
            try:
                source = json.loads(item.dataset.source).get("uri", item.dataset.source)
                items = json.loads(item.dataset.profile or "{}")
            except (ValueError, AttributeError):
                continue
            return DataVersion(item.dataset.name, str(source), item.dataset.digest, items)
    return None


def provenance(recorder: Recorder) -> dict[str, str]:
    """The training run's DVC experiment and commit, and the digest of the data it trained on; without a training
    run in this store, what this execution's run recorded of the checkpoint from the workspace (and that it did)."""
    if recorder.train_run_id is None:
        tags = recorder.mlflow.get_run(recorder.run_id).data.tags
        return {k: tags[k] for k in (*PROVENANCE, DATA_DIGEST, UNTRACED) if k in tags}
    run = recorder.mlflow.get_run(recorder.train_run_id)
    tags = {k: run.data.tags[k] for k in PROVENANCE if k in run.data.tags}
    for item in run.inputs.dataset_inputs if run.inputs else []:
        if any(t.key == "mlflow.data.context" and t.value == "training" for t in item.tags):
            tags[DATA_DIGEST] = item.dataset.digest
    return tags


def _version(uri: str) -> tuple[str, Any]:
    """(name, model version) of a models:/NAME@ALIAS or models:/NAME/VERSION URI."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    match = URI.fullmatch(uri)
    if match is None:
        raise CSRAError(f"{uri}: expected a registered model as models:/NAME@ALIAS or models:/NAME/VERSION")
    name, alias, number = match["name"], match["alias"], match["version"]
    connect()
    with store_errors(f"read the registered model '{name}'"):
        client = MlflowClient()
        try:
            return name, client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(
                name, number)
        except MlflowException as e:
            if refusal(e) is not None:
                raise
            raise CSRAError(f"{uri}: no such registered model version ({first_line(e)})") from None


def fetch(uri: str, folder: Path) -> tuple[Path, dict[str, Any], dict[str, str]]:
    """(the torch.export program file, the model's metadata, {name, version, model_uri}) of a registered version
    named by a models:/NAME@ALIAS or models:/NAME/VERSION URI, downloaded into folder."""
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    name, version = _version(uri)
    with store_errors(f"read the registered model '{name}'"):
        local = Path(download_artifacts(artifact_uri=f"models:/{name}/{version.version}", dst_path=str(folder)))
    program = local / "artifacts" / PROGRAM_FILE
    if not program.is_file():
        raise CSRAError(f"{uri}: not a model exported by csra export (no artifacts/{PROGRAM_FILE} in it)")
    found = {"name": name, "version": str(version.version), "model_uri": f"models:/{name}/{version.version}"}
    return program, Model.load(str(local)).metadata or {}, found


def load_logged(model_id: str) -> Callable[[list[bytes]], np.ndarray]:
    """The scores a logged model gives photo files, through its pyfunc as `mlflow models serve` runs it."""
    model = _load_pyfunc(f"models:/{model_id}", model_id)
    return partial(score_photo_files, model)


def score_photo_files(model: Any, photos: list[bytes]) -> np.ndarray:
    """(N, classes) scores of photo files from a served model, sent as a client sends them: base64 strings in the
    column `image`."""
    import pandas as pd

    frame = pd.DataFrame({IMAGE_COLUMN: [base64.b64encode(data).decode("ascii") for data in photos]})
    return model.predict(frame).to_numpy(dtype=np.float32)


def _load_pyfunc(uri: str, name: str) -> Any:
    import mlflow

    with store_errors(f"read the model {name}"):
        model = mlflow.pyfunc.load_model(uri)
    if not str(model.metadata.flavors.get("python_function", {}).get("loader_module")).startswith("mlflow.pyfunc"):
        raise CSRAError(f"{name}: not a model exported by csra export (an older or foreign model flavour)")
    return model


def load_served(uri: str) -> tuple[Any, dict[str, Any]]:
    """(the registered version's pyfunc model, its metadata), loaded as `mlflow models serve` loads it."""
    name, version = _version(uri)
    model = _load_pyfunc(f"models:/{name}/{version.version}", uri)
    return model, model.metadata.metadata or {}
