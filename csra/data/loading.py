"""Loading annotation items for the model: image decoding (JPEG downscale-on-decode, WIDER person crops), the
official transforms on uint8 images, seeded per-image augmentation, loaders, and the one float conversion per batch."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate
from torchvision.transforms import v2

from csra.data.pixels import hwc_to_chw, test_array
from csra.errors import CSRAError, first_line
from csra.model.network import ModelConfig

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# RandomResizedCrop keeps at least 70 % of the area at an aspect ratio of 3/4 to 4/3, so a crop of an image
# decoded at 1.4 x img_size on both sides still has about img_size pixels across: no crop is upsampled more.
TRAIN_DECODE_FACTOR = 1.4
MAX_WORKERS = 16  # more loader processes per GPU than this only cost memory
CUDA_PREFETCH = 4  # batches each worker keeps ready for a GPU (torch's default is 2)
log = logging.getLogger(__name__)


@contextmanager
def _decoding(path: str | Path) -> Iterator[None]:
    """An image file that cannot be decoded (missing, unknown format, truncated, too large) is a CSRAError naming
    it."""
    try:
        yield
    except UnidentifiedImageError:
        raise CSRAError(f"{path}: cannot read image (not a JPEG, PNG or other format PIL decodes)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        reason = first_line(e)
        raise CSRAError(f"{path}: cannot read image ({reason})") from None


def _as_tensor(image: Image.Image) -> torch.Tensor:
    """A view (3, H, W) of the pixels: no transposing copy (torch's uint8 resize is fastest on this layout)."""
    return torch.from_numpy(hwc_to_chw(image))  # a writable copy torch may share


def load_image(path: str | Path, box: tuple[float, ...] | None = None, min_size: int | None = None) -> torch.Tensor:
    """Decode an image file to a uint8 RGB tensor (3, H, W) for training; an unreadable file is a CSRAError.

    box (x0, y0, x1, y1) crops it as PIL does (zeros outside the image). With min_size, a JPEG is decoded at
    the smallest scale (1/2, 1/4, 1/8) that keeps the image, or the box, at least min_size on both sides.
    """
    with _decoding(path), Image.open(path) as image:
        scale = 1.0
        if min_size is not None:
            width, height = image.size
            box_w, box_h = (box[2] - box[0], box[3] - box[1]) if box else (width, height)
            request = (math.ceil(min_size * width / max(box_w, 1)), math.ceil(min_size * height / max(box_h, 1)))
            drafted = image.draft(None, request)
            scale = drafted[1][2] / width if drafted else 1.0
        image = image.convert("RGB") if image.mode != "RGB" else image
        if box is not None:
            image = image.crop(tuple(c * scale for c in box))
        return _as_tensor(image)


def load_test_image(path: str | Path, size: int, box: tuple[float, ...] | None = None) -> torch.Tensor:
    """The official test-time pixels, uint8 (3, size, size): the whole image decoded as RGB, cropped to box (WIDER
    persons), resized with PIL's bilinear filter to size × size — what the official evaluation feeds its
    ToTensor and Normalize. Validation, evaluate, demo and the heatmaps all read images through this."""
    with _decoding(path), Image.open(path) as image:
        return test_pixels(image.convert("RGB"), size, box)


def test_pixels(image: Image.Image, size: int, box: tuple[float, ...] | None = None) -> torch.Tensor:
    """An RGB image's official test-time pixels (see load_test_image), uint8 (3, size, size)."""
    return torch.from_numpy(test_array(image, size, box))


def person_box(bbox: list[float]) -> tuple[float, float, float, float]:
    """WIDER's [x, y, w, h] → the (x0, y0, x1, y1) crop box of the official dataset code."""
    x, y, w, h = bbox
    return x, y, x + w, y + h


def build_transform(config: ModelConfig, person_crops: bool = False) -> v2.Compose:
    """The official training geometry on uint8 images (normalize_batch converts to float after collation):
    random horizontal flip + RandomResizedCrop(img_size, scale 0.7–1.0); train on WIDER person crops:
    flip + resize to img_size². Test images are resized by load_test_image (PIL, as the official code).
    """
    size = config.img_size
    if person_crops:
        return v2.Compose([v2.RandomHorizontalFlip(), v2.Resize((size, size), antialias=True)])
    return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True)])


def normalize_batch(images: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """uint8 images (B, 3, H, W) → float32 in [0, 1] normalised by the backbone's mean and std, on their device:
    torchvision's ToDtype(scale=True) + Normalize, done once per batch instead of once per image. A mean of 0 and
    a std of 1 (the official ResNet setting) are skipped: the same values, two passes fewer over the batch."""
    batch = images.to(torch.float32).div_(255)  # as ToTensor: a division, not a multiplication by 1/255
    if any(config.mean):
        batch.sub_(_channel_values(config.mean, images.device))
    if any(s != 1 for s in config.std):
        batch.div_(_channel_values(config.std, images.device))
    return batch


def _channel_values(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """Per-channel values as a (3, 1, 1) tensor on device, copied without waiting for the GPU (no host sync)."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1).to(device, non_blocking=True)


class MultiLabelDataset(Dataset):
    """Items of an annotation file → (uint8 image tensor, target float tensor); the target keeps its label codes.

    Items with a "bbox" (WIDER) are person crops. With skip_bad, an unreadable image is logged once and its
    item dropped from the batch (see collate_readable) instead of raising.
    """

    def __init__(self, items: list[dict], config: ModelConfig, train: bool, skip_bad: bool = False):
        self.items = items
        self.config = config
        self.train = train
        self.person_crops = "bbox" in items[0] if items else False
        self.transform = build_transform(config, self.person_crops) if train else None
        train_crop = train and not self.person_crops
        self.min_size = math.ceil(config.img_size * TRAIN_DECODE_FACTOR) if train_crop else config.img_size
        self.skip_bad = skip_bad
        self.reported: set[str] = set()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        item = self.items[index]
        box = person_box(item["bbox"]) if self.person_crops else None
        try:
            if not self.train:
                image = load_test_image(item["img_path"], self.config.img_size, box)
            else:
                image = self.transform(load_image(item["img_path"], box, self.min_size))
        except CSRAError as e:
            if not self.skip_bad:
                raise
            if item["img_path"] not in self.reported:
                self.reported.add(item["img_path"])
                log.warning("warning: %s; skipped", e)
            return None
        return image, torch.tensor(item["target"], dtype=torch.float32)


class Skipped(NamedTuple):
    """In place of a sample: the item index of an image left out as unreadable, which the batch carries back from
    the loader process that met it."""

    index: int


class Batch(NamedTuple):
    """A loader's batch: the readable images (uint8), their targets and item indices (all None when none of the
    batch could be read), and the item indices of the images skipped as unreadable."""

    images: torch.Tensor | None
    targets: torch.Tensor | None
    indices: torch.Tensor | None
    skipped: list[int]


def collate_readable(batch: list) -> Batch:
    """default_collate over the readable samples ((image, target[, index])); a skipped one (Skipped, or None where
    its index is unknown) is left out, and its index listed."""
    readable = [sample for sample in batch if sample is not None and not isinstance(sample, Skipped)]
    skipped = [sample.index for sample in batch if isinstance(sample, Skipped)]
    if not readable:
        return Batch(None, None, None, skipped)
    images, targets, *indices = default_collate(readable)
    return Batch(images, targets, indices[0] if indices else None, skipped)


class SeededDataset(Dataset):
    """Takes (seed, index) keys from EpochSampler and seeds torch before the random augmentation of that image,
    so an image's crop and flip depend only on (seed, epoch, index); plain int keys pass through. Samples come
    out as (image, target, index), or Skipped(index) for an image skipped as unreadable."""

    def __init__(self, dataset: MultiLabelDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int] | Skipped:
        if isinstance(key, tuple):
            seed, key = key
            torch.manual_seed(seed)
        sample = self.dataset[key]
        return Skipped(key) if sample is None else (*sample, key)


def auto_workers(cores: int, local_processes: int, device_type: str) -> int:
    """The loader processes for `num_workers: auto`, from the cores this process may use and the training
    processes on this machine sharing them. On CUDA the GPU waits for images: every core of this process's share
    but one (kept for the main process) decodes, up to MAX_WORKERS. On the CPU the model needs the cores itself:
    one worker per four cores of the share, so that decoding overlaps the model (0 below four cores)."""
    share = max(cores // max(local_processes, 1), 1)
    workers = share - 1 if device_type == "cuda" else share // 4
    return min(workers, MAX_WORKERS)


def loader_workers(setting: int | str, cores: int, local_processes: int, device_type: str) -> int:
    """The loader processes of a num_workers setting: a number as given, 'auto' from the machine (auto_workers)."""
    return auto_workers(cores, local_processes, device_type) if setting == "auto" else int(setting)


def make_loader(
    items: list[dict], config: ModelConfig, train: bool, batch_size: int, num_workers: int,
    sampler: Sampler | None = None, skip_bad: bool = False, device_type: str = "cpu",
) -> DataLoader:
    """Batches (Batch: uint8 images, targets, item indices, skipped indices) with the official train or test
    transform, in item order unless a sampler says; skip_bad leaves unreadable images out and lists their indices.
    normalize_batch converts the images to float on the device. Workers stay between epochs; for a CUDA
    device_type the batches come in pinned memory (the copy to the GPU overlaps the model) and each worker prepares
    CUDA_PREFETCH batches ahead."""
    dataset = SeededDataset(MultiLabelDataset(items, config, train, skip_bad))
    cuda = device_type == "cuda"
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate_readable,
        pin_memory=cuda, persistent_workers=num_workers > 0, drop_last=False,
        prefetch_factor=CUDA_PREFETCH if cuda and num_workers > 0 else None,
    )


def prepare_batch(images: torch.Tensor, config: ModelConfig, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 images from a loader → normalised float on the device (NHWC in memory with channels_last)."""
    images = normalize_batch(images.to(device, non_blocking=True), config)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def list_images(folder: str | Path) -> list[Path]:
    """Image files (JPEG/PNG) directly in a folder, sorted by name."""
    folder = Path(folder)
    if folder.is_file():
        raise CSRAError(f"{folder}: a file, not a folder of images")
    if not folder.is_dir():
        raise CSRAError(f"{folder}: image folder not found")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise CSRAError(f"{folder}: no JPEG or PNG images in this folder")
    return images
