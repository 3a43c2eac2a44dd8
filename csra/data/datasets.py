"""The torch Dataset over annotation items, image decoding and the official train/test transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms import v2

from csra.errors import CSRAError
from csra.model import ModelConfig

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def load_image(path: str | Path) -> torch.Tensor:
    """Decode an image file to a uint8 RGB tensor (3, H, W); an unreadable file is a CSRAError naming it."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise CSRAError(f"{path}: cannot read image (not a JPEG, PNG or other format PIL decodes)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CSRAError(f"{path}: cannot read image ({reason})") from None
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))  # the one copy, already CHW


def build_transform(config: ModelConfig, train: bool) -> v2.Compose:
    """Official transforms on uint8 tensors, converted to float once at the end.

    train: random horizontal flip + RandomResizedCrop(img_size, scale 0.7–1.0); test: resize to img_size².
    """
    size = config.img_size
    if train:
        geometry = [v2.RandomHorizontalFlip(), v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True)]
    else:
        geometry = [v2.Resize((size, size), antialias=True)]
    return v2.Compose([
        *geometry,
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(config.mean), std=list(config.std)),
    ])


class MultiLabelDataset(Dataset):
    """Items of an annotation file → (image tensor, target float tensor); the target keeps its label codes."""

    def __init__(self, items: list[dict], transform: v2.Compose):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.items[index]
        image = self.transform(load_image(item["img_path"]))
        return image, torch.tensor(item["target"], dtype=torch.float32)


def list_images(folder: str | Path) -> list[Path]:
    """Image files (JPEG/PNG) directly in a folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CSRAError(f"{folder}: image folder not found")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise CSRAError(f"{folder}: no JPEG or PNG images in this folder")
    return images
