"""The registered model, MLflow's side of export: the scoring program logged once per trained model, a version
registered on request or when it beats the best one evaluated on the same test file, the alias `champion` on that
best one, and a models:/ URI read back (the program file and its metadata). MLflow code, beside tracking.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csra.errors import CSRAError
from csra.evaluate.metrics import METRIC_NAMES
from stages.tracking import TEST_DIGEST, TEST_FILE, Recorder, connect, store_errors

CHAMPION = "champion"
KEY_TAG = "csra.model_key"  # on a logged model: the checkpoint and model config it was made from
DATA_DIGEST = "dataset.digest"  # DVC's hash of the prepared data the model was trained on
PROVENANCE = ("dvc.exp_name", "dvc.exp_ref", "dvc.baseline_rev", "mlflow.source.git.commit")
PROGRAM = Path("data") / "model.pt2"  # inside an MLflow PyTorch model in the pt2 format
URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))")


@dataclass(frozen=True)
class Evaluation:
    """What evaluate said of a model: its metrics and the test file's path and digest."""

    metrics: dict[str, float]
    file: str
    digest: str

    def tags(self) -> dict[str, str]:
        return {**{k: f"{v:.4f}" for k, v in self.metrics.items()}, TEST_FILE: self.file, TEST_DIGEST: self.digest}


def log_scoring_model(recorder: Recorder, key: str, scoring: Any, example: Any, classes: list[str],
                      metadata: dict[str, Any]) -> str:
    """The id of the logged model made from key (a checkpoint and its config): the one a run of this experiment
    logged before, else the scoring module (uint8 images in, scores out) logged now to the active run as an MLflow
    PyTorch model in the 'pt2' format (a torch.export program: no pickled code), with its signature, input example
    and metadata. One logged model per trained model, however often export runs."""
    import numpy as np
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    mlflow = recorder.mlflow
    with store_errors():
        experiment = mlflow.get_run(recorder.run_id).info.experiment_id
        found = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list", max_results=1,
                                            filter_string=f"tags.`{KEY_TAG}` = '{key}'")
        if found:
            return found[0].model_id
        signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, 3, -1, -1))]),
                                   outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(classes)))]))
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                        f"numpy=={np.__version__}"]
        return mlflow.pytorch.log_model(scoring, name="model", signature=signature, input_example=example,
                                        serialization_format="pt2", pip_requirements=requirements,
                                        metadata=metadata, tags={KEY_TAG: key}).model_id


def evaluation(recorder: Recorder) -> Evaluation | None:
    """The evaluation of this execution's run, else of the training run it builds on (export then reports the
    metrics of the evaluate that ran with that training); None where evaluate has logged nothing."""
    for run_id in dict.fromkeys(filter(None, (recorder.run_id, recorder.train_run_id))):
        data = recorder.mlflow.get_run(run_id).data
        if TEST_DIGEST in data.tags:
            return Evaluation({k: data.metrics[k] for k in METRIC_NAMES if k in data.metrics}, data.tags[TEST_FILE],
                              data.tags[TEST_DIGEST])
    return None


def provenance(recorder: Recorder) -> dict[str, str]:
    """The training run's DVC experiment and commit, and the digest of the data it trained on."""
    if recorder.train_run_id is None:
        return {}
    run = recorder.mlflow.get_run(recorder.train_run_id)
    tags = {k: run.data.tags[k] for k in PROVENANCE if k in run.data.tags}
    for item in run.inputs.dataset_inputs if run.inputs else []:
        if any(t.key == "mlflow.data.context" and t.value == "training" for t in item.tags):
            tags[DATA_DIGEST] = item.dataset.digest
    return tags


def _champion(client: Any, name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no such model, or no champion yet
        return None


def _best(client: Any, name: str, digest: str, metric: str) -> Any | None:
    """The best version by metric among those evaluated on the test file of digest (the older one on a tie)."""
    versions = [v for v in client.search_model_versions(f"name = '{name}'")
                if v.tags.get(TEST_DIGEST) == digest and metric in v.tags]
    return max(versions, key=lambda v: (float(v.tags[metric]), -int(v.version)), default=None)


def _decision(client: Any, name: str, policy: str, metric: str, candidate: Evaluation | None) -> str | None:
    """None when a new version is to be registered, else why not. `better` compares with the best version
    evaluated on the same test file (the champion, unless the test file changed); versions evaluated on other
    files are not compared."""
    if policy == "always":
        return None
    if policy == "never":
        return "not registered (export.register: never)"
    if candidate is None or metric not in candidate.metrics:
        return f"not registered: this execution logged no {metric} (evaluate logs it; export.register: always " \
               "registers anyway)"
    best = _best(client, name, candidate.digest, metric)
    if best is None or candidate.metrics[metric] > float(best.tags[metric]):
        return None
    return f"not registered: {metric} {candidate.metrics[metric]:.2f} does not beat version {best.version} " \
           f"({float(best.tags[metric]):.2f}), the best on this test file"


def elect_champion(client: Any, name: str, digest: str, metric: str) -> str | None:
    """Point the alias champion at the best version by metric among those evaluated on the test file of digest;
    read again after moving it, so that a concurrent export cannot leave it on a worse version. Returns the
    champion's version, or None when no version qualifies."""
    for _ in range(3):
        best = _best(client, name, digest, metric)
        if best is None:
            return None
        current = _champion(client, name)
        if current is not None and current.version == best.version:
            break
        client.set_registered_model_alias(name, CHAMPION, best.version)
    return str(best.version)


def register(recorder: Recorder, model_id: str, name: str, policy: str, metric: str) -> dict[str, Any]:
    """Register the logged model as a version of name as export.register says (never twice the same logged
    model), tagged with its metrics, test file, data digest, DVC experiment and commit; then elect the champion.
    Returns what the run records as export/registration.json."""
    from mlflow import MlflowClient

    with store_errors():
        client, candidate = MlflowClient(), evaluation(recorder)
        mine = [v for v in client.search_model_versions(f"name = '{name}'") if v.source == f"models:/{model_id}"]
        reason = "already registered" if mine else _decision(client, name, policy, metric, candidate)
        version = mine[0].version if mine else None
        if reason is None:
            tags = {**provenance(recorder), **(candidate.tags() if candidate else {}), "run_id": recorder.run_id}
            version = recorder.mlflow.register_model(f"models:/{model_id}", name, tags=tags).version
            reason = "registered"
        champion = elect_champion(client, name, candidate.digest, metric) if candidate else None
    return {"name": name, "version": str(version) if version else None,
            "model_uri": f"models:/{name}/{version}" if version else f"models:/{model_id}",
            "logged_model": f"models:/{model_id}", "registered": reason,
            "champion": champion, "metric": metric}


def fetch(uri: str, folder: Path) -> tuple[Path, dict[str, Any], dict[str, str]]:
    """(the torch.export program file, the model's metadata, {name, version, model_uri}) of a registered version
    named by a models:/NAME@ALIAS or models:/NAME/VERSION URI, downloaded into folder."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    match = URI.fullmatch(uri)
    if match is None:
        raise CSRAError(f"{uri}: expected a registered model as models:/NAME@ALIAS or models:/NAME/VERSION")
    name, alias, number = match["name"], match["alias"], match["version"]
    connect()
    with store_errors():
        client = MlflowClient()
        try:
            version = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(
                name, number)
        except MlflowException as e:
            raise CSRAError(f"{uri}: no such registered model version ({str(e).splitlines()[0]})") from None
        local = Path(download_artifacts(artifact_uri=f"models:/{name}/{version.version}", dst_path=str(folder)))
    if not (local / PROGRAM).is_file():
        raise CSRAError(f"{uri}: not a model exported by csra export (no {PROGRAM.as_posix()} in it)")
    found = {"name": name, "version": str(version.version), "model_uri": f"models:/{name}/{version.version}"}
    return local / PROGRAM, Model.load(str(local)).metadata or {}, found
