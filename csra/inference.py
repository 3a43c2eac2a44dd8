"""Inference on image files: class scores per image and the official demo line."""

from __future__ import annotations

from pathlib import Path

import torch

from csra.data.datasets import build_transform, load_image, normalize_batch
from csra.errors import CSRAError
from csra.model import CSRAModel


@torch.no_grad()
def predict_files(
    model: CSRAModel, paths: list[Path], device: torch.device, batch_size: int = 16
) -> tuple[list[tuple[Path, list[float]]], list[str]]:
    """([(path, sigmoid score per class)], [one message per unreadable image, which is skipped])."""
    transform = build_transform(model.config, train=False)
    model.eval().to(device)
    results, errors = [], []
    for start in range(0, len(paths), batch_size):
        chunk = []
        for path in paths[start : start + batch_size]:
            try:
                chunk.append((path, transform(load_image(path, min_size=model.config.img_size))))
            except CSRAError as e:
                errors.append(str(e))
        if chunk:
            batch = normalize_batch(torch.stack([image for _, image in chunk]).to(device), model.config)
            scores = torch.sigmoid(model(batch)).cpu().tolist()
            results.extend((path, score) for (path, _), score in zip(chunk, scores))
    return results, errors


def demo_line(path: Path | str, scores: list[float], classes: list[str], thresholds: list[float]) -> str:
    """The official demo output: 'path prediction: cls,cls,' with every class scoring at least its threshold."""
    return f"{path} prediction: " + "".join(f"{c}," for c, s, t in zip(classes, scores, thresholds) if s >= t)
