"""Scoring raw images: the exported scoring module (preprocessing + model + sigmoid), scores of image files through
the one prediction path or through an exported program, thresholds and the demo line."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from csra.deploy.resize import pil_bilinear_resize
from csra.errors import CSRAError
from csra.evaluate.predict import NothingReadable, predict
from csra.model.network import CSRAModel

log = logging.getLogger(__name__)


class ScoringModel(nn.Module):
    """Raw images in, class scores out: the form every exported model carries.

    Input: uint8 RGB images (B, 3, H, W), any H and W. Inside: PIL's bilinear resize to img_size², bit for bit
    (csra.deploy.resize), scaling to [0, 1] and the model's mean and std — the official test-time preprocessing
    that evaluate and demo apply with PIL itself. Output: sigmoid scores (B, num_classes).
    """

    def __init__(self, model: CSRAModel):
        super().__init__()
        self.model = model
        self.img_size = model.config.img_size
        self.register_buffer("pixel_mean", torch.tensor(model.config.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(model.config.std, dtype=torch.float32).view(1, 3, 1, 1))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) → normalised float (B, 3, img_size, img_size), the model's input."""
        x = pil_bilinear_resize(images, self.img_size).to(torch.float32) / 255.0
        return (x - self.pixel_mean) / self.pixel_std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(self.preprocess(images)))


def predict_files(model: CSRAModel, paths: list[Path], device: torch.device, batch_size: int = 16,
                  skip_bad: bool = True) -> list[tuple[Path, list[float]]]:
    """[(path, sigmoid score per class)] of image files through the one prediction path (evaluate's); with
    skip_bad an unreadable image is reported (a warning) and left out, else it is a CSRAError."""
    items = [{"img_path": str(path), "target": [0] * model.config.num_classes} for path in paths]
    try:
        scored = predict(model, items, model.config, batch_size, 0, device, skip_bad=skip_bad)
    except NothingReadable:
        raise CSRAError(f"{paths[0].parent}: none of the {len(paths)} images could be read") from None
    return [(paths[i], row.tolist()) for i, row in zip(scored.indices, scored.scores)]


def demo_line(path: Path | str, scores: list[float], classes: list[str], thresholds: list[float]) -> str:
    """The official demo output: 'path prediction: cls,cls,' with every class scoring at least its threshold."""
    return f"{path} prediction: " + "".join(f"{c}," for c in predicted_labels(scores, classes, thresholds))


def class_thresholds(num_classes: int, global_threshold: float, tuned: list | None = None, per_class: bool = False,
                     source: str = "checkpoint") -> list[float]:
    """One threshold per class: the global one, or the per-class ones a checkpoint stores (a class without a
    tuned value keeps the global one). source names the checkpoint in the error when it stores none."""
    if not per_class:
        return [global_threshold] * num_classes
    if not tuned:
        raise CSRAError(f"{source}: no per-class thresholds stored (train with train.tune_thresholds: true)")
    return [global_threshold if t is None else t for t in tuned]


def predicted_labels(scores: list[float], classes: list[str], thresholds: list[float]) -> list[str]:
    """The classes whose score reaches their threshold (score >= threshold), in class order."""
    return [c for c, s, t in zip(classes, scores, thresholds) if s >= t]
