"""Class attention heatmaps: CSRA's class-specific score maps over a copy of the image at most DISPLAY_SIDE pixels
on its longer side (PNG files), so memory is bounded for any image size."""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from csra.data.loading import load_test_image, normalize_batch, test_pixels
from csra.fileio import atomic_dir, atomic_write
from csra.model.network import CSRAModel

ALPHA = 0.5  # weight of the heatmap colour over the image
DISPLAY_SIDE = 1024  # longer side, in pixels, of the overlays (smaller images keep their size)
SHEET_COLUMNS = 4
SHEET_TILE = 320  # longer side of a contact-sheet tile, in pixels
SHEET_TITLE, SHEET_PAD = 20, 8  # height of a tile's title band, space around tiles


def class_score_maps(model: CSRAModel, x: torch.Tensor) -> torch.Tensor:
    """Score maps (B, K, h, w) for normalised images x, before any pooling. CSRA: the sum over heads of each
    head's class-specific map (1×1 conv over the feature map, divided by the class weight's norm); its mean is the
    sum of the mean-pooled logits and every head's attention weights the places bright here. The GAP baseline:
    its class activation map (the linear classifier at each location, bias included), whose mean is the logit.
    """
    return model.classifier.score_map(model.backbone(x))


def model_input(model: CSRAModel, pixels: torch.Tensor) -> torch.Tensor:
    """The model's input (1, 3, img_size, img_size) on its device for one image's test-time pixels (uint8, from
    csra.data.loading.load_test_image): exactly what evaluate and demo score."""
    return normalize_batch(pixels.unsqueeze(0).to(next(model.parameters()).device), model.config)


def display_size(height: int, width: int, longest: int = DISPLAY_SIDE) -> tuple[int, int]:
    """(height, width) shrunk, aspect kept, so that the longer side is at most `longest` pixels."""
    scale = min(1.0, longest / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


@torch.no_grad()
def feature_score_maps(model: CSRAModel, pixels: torch.Tensor) -> torch.Tensor:
    """Score maps (K, h, w) at the feature-map resolution, on the CPU, of one image's test-time pixels."""
    return class_score_maps(model.eval(), model_input(model, pixels))[0].cpu()


def upsample(score_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """One map (h, w) bilinearly resized to size (height, width)."""
    return F.interpolate(score_map[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]


def image_score_maps(model: CSRAModel, image: torch.Tensor) -> torch.Tensor:
    """Score maps (K, H', W') of one uint8 image (3, H, W), upsampled from the feature grid to the display size
    (H', W') = display_size(H, W): the image's own size unless its longer side exceeds DISPLAY_SIDE."""
    pixels = test_pixels(Image.fromarray(image.permute(1, 2, 0).numpy()), model.config.img_size)
    maps = feature_score_maps(model, pixels)
    size = display_size(*image.shape[1:])
    return torch.stack([upsample(m, size) for m in maps])


@lru_cache(maxsize=1)
def _jet() -> np.ndarray:
    """matplotlib's 'jet' colours as its 256-entry table, scaled to 0..255."""
    import matplotlib

    return matplotlib.colormaps["jet"](np.arange(256))[:, :3] * 255.0


def overlay(image: torch.Tensor | np.ndarray, score_map: torch.Tensor, alpha: float = ALPHA) -> np.ndarray:
    """uint8 (H, W, 3): the image under the map in the 'jet' colours, the map scaled to [0, 1] by its min and max.

    image is a uint8 tensor (3, H, W) or array (H, W, 3); the map has the same H × W.
    """
    values = score_map.numpy().astype(np.float64)
    span = values.max() - values.min()
    values = (values - values.min()) / span if span > 0 else np.zeros_like(values)
    heat = _jet()[np.clip((values * 256).astype(np.int64), 0, 255)]  # how matplotlib indexes its colour table
    pixels = image.permute(1, 2, 0).numpy() if isinstance(image, torch.Tensor) else image
    return np.clip((1 - alpha) * pixels + alpha * heat, 0, 255).round().astype(np.uint8)


def display_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The image file as uint8 (height, width, 3) at size; a JPEG is decoded at a reduced scale when it can be."""
    height, width = size
    with Image.open(path) as image:
        image.draft("RGB", (width, height))
        image = image.convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(image)


def _save_png(path: Path, pixels: np.ndarray) -> Path:
    return atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """text, cut with '…' so that it fits in width pixels."""
    while len(text) > 1 and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…"
    return text


def _contact_sheet(path: Path, title: str, image: np.ndarray, panels: list[tuple[str, np.ndarray]]) -> Path:
    """The image, then one overlay per predicted class titled with its name and score, in one PNG drawn with PIL;
    tiles are SHEET_TILE pixels on their longer side."""
    tiles = [(title, image), *(panels or [("no class predicted", None)])]
    cols = min(len(tiles), SHEET_COLUMNS)
    rows = math.ceil(len(tiles) / cols)
    scale = SHEET_TILE / max(image.shape[:2])  # small images are enlarged
    height, width = (max(1, round(side * scale)) for side in image.shape[:2])
    cell_w, cell_h = width + SHEET_PAD, height + SHEET_TITLE + SHEET_PAD
    sheet = Image.new("RGB", (cols * cell_w + SHEET_PAD, rows * cell_h + SHEET_PAD), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=13)
    for i, (name, pixels) in enumerate(tiles):
        x, y = SHEET_PAD + (i % cols) * cell_w, SHEET_PAD + (i // cols) * cell_h
        draw.text((x + width / 2, y + SHEET_TITLE / 2), _fit_text(draw, name, font, width), fill="black",
                  font=font, anchor="mm")
        if pixels is not None:
            sheet.paste(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR),
                        (x, y + SHEET_TITLE))
    return atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))


def image_keys(paths: list[Path]) -> list[str]:
    """A file-name key per image: its stem, or its full name with '.' → '_' where two images share a stem."""
    counts = Counter(p.stem for p in paths)
    return [p.stem if counts[p.stem] == 1 else p.name.replace(".", "_") for p in paths]


def write_heatmaps(
    model: CSRAModel, predictions: list[tuple[Path, list[float], list[str]]], classes: list[str], out_dir: Path
) -> list[Path]:
    """For each (image path, scores, predicted labels): KEY/<class>.png per predicted class and the contact sheet
    KEY.png, all in out_dir, which is replaced whole. Returns the contact sheets' paths.

    Each class map is at most DISPLAY_SIDE pixels on its longer side (the image's own size when smaller), and a
    sheet's tiles SHEET_TILE; the maps come from the same test-time pixels as the scores.
    """
    sheets = []
    with atomic_dir(out_dir) as tmp:
        for key, (path, scores, labels) in zip(image_keys([p for p, _, _ in predictions]), predictions):
            maps = feature_score_maps(model, load_test_image(path, model.config.img_size))
            with Image.open(path) as image:
                size = display_size(image.height, image.width)
            shown = display_image(path, size)
            panels = []
            for label in labels:
                c = classes.index(label)
                pixels = overlay(shown, upsample(maps[c], size))
                _save_png(tmp / key / f"{label.replace('/', '_')}.png", pixels)
                panels.append((f"{label} {scores[c]:.2f}", pixels))
            _contact_sheet(tmp / f"{key}.png", path.name, shown, panels)
            sheets.append(out_dir / f"{key}.png")
    return sheets
