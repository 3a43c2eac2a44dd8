"""Inference on raw images: the scoring module (preprocessing + model + sigmoid), scores per file, the demo line."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from csra.data.loading import load_image
from csra.errors import CSRAError
from csra.model.network import CSRAModel


class ScoringModel(nn.Module):
    """Raw images in, class scores out: the form the demo runs and every exported model carries.

    Input: uint8 RGB images (B, 3, H, W), any H and W. They are scaled to [0, 1], resized to img_size² (bilinear,
    antialiased) and normalised with the model config's mean and std. Output: sigmoid scores (B, num_classes).
    """

    def __init__(self, model: CSRAModel):
        super().__init__()
        self.model = model
        self.img_size = model.config.img_size
        self.register_buffer("pixel_mean", torch.tensor(model.config.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(model.config.std, dtype=torch.float32).view(1, 3, 1, 1))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) → normalised float (B, 3, img_size, img_size), the model's input."""
        size = (self.img_size, self.img_size)
        x = F.interpolate(images.float() / 255.0, size=size, mode="bilinear", align_corners=False, antialias=True)
        return (x - self.pixel_mean) / self.pixel_std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(self.preprocess(images)))


@torch.no_grad()
def predict_files(
    model: CSRAModel, paths: list[Path], device: torch.device, batch_size: int = 16
) -> tuple[list[tuple[Path, list[float]]], list[str]]:
    """([(path, sigmoid score per class)], [one message per unreadable image, which is skipped])."""
    scoring = ScoringModel(model).eval().to(device)
    results, errors = [], []
    for start in range(0, len(paths), batch_size):
        chunk = []
        for path in paths[start : start + batch_size]:
            try:
                image = load_image(path).unsqueeze(0).to(device)
            except CSRAError as e:
                errors.append(str(e))
                continue
            chunk.append((path, scoring.preprocess(image)))
        if chunk:
            batch = torch.cat([image for _, image in chunk])
            scores = torch.sigmoid(model(batch)).cpu().tolist()
            results.extend((path, score) for (path, _), score in zip(chunk, scores))
    return results, errors


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
