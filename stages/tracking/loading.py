"""A model read back from MLflow: a registered version named by a models:/ URI (its program file and metadata), or
a logged or registered model's pyfunc as `mlflow models serve` loads it, and the scores it gives photo files."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.pyfunc import PyFuncModel

from csra.deploy.photos import IMAGE_COLUMN
from csra.errors import CSRAError, first_line
from stages.tracking.registry import PROGRAM_FILE
from stages.tracking.store import connect, refusal, store_errors

URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))")


class PhotoRefused(Exception):
    """A served model refused a photo file (MLflow's message)."""


def _version(uri: str) -> tuple[str, ModelVersion]:
    """(name, model version) of a models:/NAME@ALIAS or models:/NAME/VERSION URI."""
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


def score_photo_files(model: PyFuncModel, photos: list[bytes]) -> np.ndarray:
    """(N, classes) scores of photo files from a served model, sent as a client sends them: base64 strings in the
    column `image`."""
    frame = pd.DataFrame({IMAGE_COLUMN: [base64.b64encode(data).decode("ascii") for data in photos]})
    return model.predict(frame).to_numpy(dtype=np.float32)


def score_photo(model: PyFuncModel, photo: bytes) -> list[float]:
    """The scores of one photo file from a served model; PhotoRefused when the model refuses it."""
    try:
        return score_photo_files(model, [photo])[0].tolist()
    except MlflowException as e:
        raise PhotoRefused(str(e)) from None


def _load_pyfunc(uri: str, name: str) -> PyFuncModel:
    with store_errors(f"read the model {name}"):
        model = mlflow.pyfunc.load_model(uri)
    if not str(model.metadata.flavors.get("python_function", {}).get("loader_module")).startswith("mlflow.pyfunc"):
        raise CSRAError(f"{name}: not a model exported by csra export (an older or foreign model flavour)")
    return model


def load_served(uri: str) -> tuple[PyFuncModel, dict[str, Any]]:
    """(the registered version's pyfunc model, its metadata), loaded as `mlflow models serve` loads it."""
    name, version = _version(uri)
    model = _load_pyfunc(f"models:/{name}/{version.version}", uri)
    return model, model.metadata.metadata or {}
