"""The registered model, MLflow's side of export: the scoring program logged once per trained model, what a version
is tagged with (its evaluation and provenance). Which versions are registered and which is the champion:
registration.py; a models:/ URI read back: loading.py."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import PIL
import torch
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, Schema

from csra.deploy.serving import CONTRACT_ARTIFACT, PROGRAM_ARTIFACT
from csra.evaluate.metrics import METRIC_NAMES
from stages.tracking.lineage import DataVersion
from stages.tracking.runs import DATA_DIGEST, TEST_DIGEST, TEST_FILE, UNTRACED, Recorder
from stages.tracking.store import store_errors

TEST_METRICS = "test.metrics"  # on a version: evaluate's metrics on its test file, as JSON
KEY_TAG = "csra.model_key"  # on a logged model: the checkpoint and model config it was made from
PROVENANCE = ("dvc.exp_name", "dvc.exp_ref", "dvc.baseline_rev", "mlflow.source.git.commit")
SERVED_MODEL = Path(__file__).with_name("served_model.py")  # the registered model's code
PROGRAM_FILE, CONTRACT_FILE = "model.pt2", "contract.json"  # its artifacts, under artifacts/ in the model



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


def version_metric(version: ModelVersion, metric: str) -> float | None:
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
    stages/tracking/served_model.py as code (MLflow's models-from-code: no pickle) with the torch.export program and its
    contract (classes, input size, pixel limit) as artifacts, the classes as its output signature, and metadata;
    its metrics are the execution's evaluation (scored), on the data evaluate scored. One logged model per
    trained model, however often export runs."""
    with store_errors(f"log the model {name} to its run's experiment"):
        experiment = recorder.run().info.experiment_id
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
        run = recorder.run(run_id)
        if TEST_DIGEST in run.data.tags:
            return Evaluation({k: run.data.metrics[k] for k in METRIC_NAMES if k in run.data.metrics},
                              run.data.tags[TEST_FILE], run.data.tags[TEST_DIGEST], _scored_data(run))
    return None


def _scored_data(run: Run) -> DataVersion | None:
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
        tags = recorder.run().data.tags
        return {k: tags[k] for k in (*PROVENANCE, DATA_DIGEST, UNTRACED) if k in tags}
    run = recorder.run(recorder.train_run_id)
    tags = {k: run.data.tags[k] for k in PROVENANCE if k in run.data.tags}
    for item in run.inputs.dataset_inputs if run.inputs else []:
        if any(t.key == "mlflow.data.context" and t.value == "training" for t in item.tags):
            tags[DATA_DIGEST] = item.dataset.digest
    return tags
