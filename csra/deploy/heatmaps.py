"""Class attention heatmaps: CSRA's class-specific score maps, upsampled to the image and overlaid (PNG files)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from csra.data.loading import load_image  # noqa: E402
from csra.deploy.scoring import ScoringModel  # noqa: E402
from csra.fileio import atomic_dir, atomic_write  # noqa: E402
from csra.model.network import CSRAModel  # noqa: E402

ALPHA = 0.5  # weight of the heatmap colour over the image
SHEET_COLUMNS = 4


def class_score_maps(model: CSRAModel, x: torch.Tensor) -> torch.Tensor:
    """Score maps (B, K, h, w) for normalised images x: the sum over heads of each head's class-specific map
    (1×1 conv over the feature map, divided by the class weight's norm), before any pooling.

    Mean-pooling this map gives the sum over heads of the mean-pooled logits; the attention of every head
    weights the same locations that are bright here.
    """
    features = model.backbone(x)
    heads = model.classifier.multi_head
    maps = heads[0].score_map(features)
    for head in heads[1:]:
        maps = maps + head.score_map(features)
    return maps


@torch.no_grad()
def image_score_maps(model: CSRAModel, image: torch.Tensor) -> torch.Tensor:
    """Score maps (K, H, W) of one uint8 image (3, H, W), bilinearly upsampled from the feature grid to H × W."""
    device = next(model.parameters()).device
    x = ScoringModel(model).to(device).preprocess(image.unsqueeze(0).to(device))
    maps = class_score_maps(model.eval(), x)
    return F.interpolate(maps, size=tuple(image.shape[1:]), mode="bilinear", align_corners=False)[0].cpu()


def overlay(image: torch.Tensor, score_map: torch.Tensor, alpha: float = ALPHA) -> np.ndarray:
    """uint8 (H, W, 3): the image under the map in the 'jet' colours, the map scaled to [0, 1] by its min and max."""
    values = score_map.numpy().astype(np.float64)
    span = values.max() - values.min()
    values = (values - values.min()) / span if span > 0 else np.zeros_like(values)
    heat = matplotlib.colormaps["jet"](values)[..., :3] * 255.0
    pixels = image.permute(1, 2, 0).numpy().astype(np.float64)
    return np.clip((1 - alpha) * pixels + alpha * heat, 0, 255).round().astype(np.uint8)


def _save_png(path: Path, pixels: np.ndarray) -> Path:
    return atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))


def _contact_sheet(path: Path, title: str, image: torch.Tensor, panels: list[tuple[str, np.ndarray]]) -> Path:
    """The image, then one overlay per predicted class titled with its name and score, in one PNG."""
    tiles = [(title, image.permute(1, 2, 0).numpy()), *panels]
    cols = min(len(tiles), SHEET_COLUMNS)
    rows = math.ceil(len(tiles) / cols)
    height, width = image.shape[1:]
    scale = 2.4 / max(height, width)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * width * scale, rows * height * scale + 0.4), squeeze=False)
    for ax, (name, pixels) in zip(axes.flat, tiles + [("", None)] * (rows * cols - len(tiles))):
        ax.axis("off")
        if pixels is not None:
            ax.imshow(pixels)
            ax.set_title(name, fontsize=9)
    if len(tiles) == 1:
        fig.suptitle("no class predicted", fontsize=9)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)


def image_keys(paths: list[Path]) -> list[str]:
    """A file-name key per image: its stem, or its full name with '.' → '_' where two images share a stem."""
    counts = Counter(p.stem for p in paths)
    return [p.stem if counts[p.stem] == 1 else p.name.replace(".", "_") for p in paths]


def write_heatmaps(
    model: CSRAModel, predictions: list[tuple[Path, list[float], list[str]]], classes: list[str], out_dir: Path
) -> list[Path]:
    """For each (image path, scores, predicted labels): KEY/<class>.png per predicted class and the contact sheet
    KEY.png, all in out_dir, which is replaced whole. Returns the contact sheets' paths."""
    sheets = []
    with atomic_dir(out_dir) as tmp:
        for key, (path, scores, labels) in zip(image_keys([p for p, _, _ in predictions]), predictions):
            image = load_image(path)
            maps = image_score_maps(model, image)
            panels = []
            for label in labels:
                c = classes.index(label)
                pixels = overlay(image, maps[c])
                _save_png(tmp / key / f"{label.replace('/', '_')}.png", pixels)
                panels.append((f"{label} {scores[c]:.2f}", pixels))
            _contact_sheet(tmp / f"{key}.png", path.name, image, panels)
            sheets.append(out_dir / f"{key}.png")
    return sheets
