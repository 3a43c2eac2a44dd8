"""CSRA: class-specific residual attention for multi-label image recognition (ICCV 2021).

    import csra
    model = csra.load_model("results/train/best.pt")
    for p in model.score_folder("photos/"):
        print(p.image, p.labels)
    csra.evaluate_predictions("scores.json", "test_voc07.json", dataset="voc07")["mAP"]

Importing csra loads nothing heavy: the API functions import torch when called.
"""

from __future__ import annotations

import importlib
from typing import Any

from csra.errors import CSRAError

__all__ = ["CSRAError", "Classifier", "Prediction", "evaluate_predictions", "load_model"]
_API = {"Classifier", "Prediction", "evaluate_predictions", "load_model"}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("csra.api"), name)
    raise AttributeError(f"module 'csra' has no attribute {name!r}")
