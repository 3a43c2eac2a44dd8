"""The registered model as MLflow loads it: this file, logged as code (MLflow's models-from-code; nothing pickled),
with two artifacts, the torch.export program and its contract (classes, input size, pixel limit). It scores what
`mlflow models serve` passes it through csra.deploy.serving, the path csra demo --model-uri takes too: photos as
base64 strings in a column `image`, or uint8 pixel arrays. It needs the csra package (the project's environment:
serve with --env-manager local). A payload it cannot score is MLflow's INVALID_PARAMETER_VALUE: a 400 whose
message ends with one sentence naming the contract."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from csra.deploy.serving import CONTRACT_ARTIFACT, IMAGE_COLUMN, PROGRAM_ARTIFACT, ImageScorer, PayloadError, refused


class ServedCSRA(mlflow.pyfunc.PythonModel):
    """Photos or pixels in; a frame out with one row per image and one column per class, in the model's order."""

    # No schema from type hints (MLflow would take predict's for the input schema and refuse one of the two input
    # forms): MLflow's switch for classes that check their input themselves.
    _skip_type_hint_validation = True

    def load_context(self, context):  # noqa: ANN001 (MLflow's own types)
        contract = json.loads(Path(context.artifacts[CONTRACT_ARTIFACT]).read_text(encoding="utf-8"))
        program = torch.export.load(context.artifacts[PROGRAM_ARTIFACT]).module()
        self.scorer = ImageScorer(program, contract["classes"], contract["img_size"], contract["max_pixels"])

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        try:
            scores = self.score(model_input)
        except PayloadError as e:
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from None
        return pd.DataFrame(scores, columns=self.scorer.classes)

    def score(self, model_input: object) -> np.ndarray:
        if isinstance(model_input, pd.DataFrame):
            columns = [str(c) for c in model_input.columns]
            if not columns or model_input.empty:
                raise refused("the request holds no image")
            if columns != [IMAGE_COLUMN]:
                raise refused(f"the request's columns are {', '.join(columns)}, not only {IMAGE_COLUMN!r}")
            return self.scorer.score_base64(model_input[IMAGE_COLUMN].tolist())
        if isinstance(model_input, dict) and list(model_input) == [IMAGE_COLUMN]:
            return self.scorer.score_base64(list(np.atleast_1d(model_input[IMAGE_COLUMN])))
        if isinstance(model_input, (np.ndarray, list)):
            try:
                array = np.asarray(model_input)
            except ValueError:  # lists of different lengths: images of different sizes
                raise refused("the arrays are not one block of numbers (images of different sizes)") from None
            return self.scorer.score_array(array)
        raise refused(f"the request is a {type(model_input).__name__}")


mlflow.models.set_model(ServedCSRA())
