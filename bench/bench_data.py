"""Images per second of the training data pipeline (decode, augment, collate): ours against plain PIL → ToTensor.

    python bench/bench_data.py [--images N] [--size S] [--workers W] [--batch-size B] [--epochs E] [--repeat R]

Generates N VOC-sized JPEGs (500x375) in a temp folder, then times E passes of a DataLoader over them with the
official train augmentation (flip, RandomResizedCrop(S, 0.7-1.0), resize to S x S). Ours is timed twice: up to
the uint8 batch its workers deliver (training converts it on the GPU), and up to the normalised float batch made
in the main process, as on a CPU-only run. The first pass starts the workers and is not timed; the best of R
alternating runs is kept. Not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from csra.data.loading import make_loader, normalize_batch
from csra.distributed import SINGLE, EpochSampler
from csra.model.network import ModelConfig


class PlainDataset(Dataset):
    """The official pipeline: PIL decode, PIL augmentation, ToTensor, Normalize."""

    def __init__(self, items: list[dict], size: int, mean: tuple, std: tuple):
        self.items = items
        self.transform = transforms.Compose([
            transforms.RandomHorizontalFlip(),
            transforms.RandomResizedCrop(size, scale=(0.7, 1.0)),
            transforms.Resize((size, size)),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.items[index]
        image = self.transform(Image.open(item["img_path"]).convert("RGB"))
        return image, torch.tensor(item["target"], dtype=torch.float32)


def make_images(folder: Path, count: int) -> list[dict]:
    """VOC-sized photos stand-ins: smooth gradients plus noise, saved as JPEG at quality 90."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500] / 500
    items = []
    for i in range(count):
        slope = rng.uniform(-200, 200, size=(2, 3))
        pixels = 128 + xx[..., None] * slope[0] + yy[..., None] * slope[1] + rng.normal(0, 20, (375, 500, 3))
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        items.append({"img_path": str(path), "target": [int(i % 2), int(i % 3 == 0)]})
    return items


def images_per_second(loader: DataLoader, epochs: int, finish: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """Images per second over `epochs` passes, each batch made model-ready by `finish` (timed too)."""
    for _ in loader:  # starts the persistent workers
        pass
    count, start = 0, time.perf_counter()
    for _ in range(epochs):
        for images, *_ in loader:
            count += len(finish(images))
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="alternate the pipelines R times, keep the best")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = ModelConfig.create("resnet101", 2, 1, 0.1, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        items = make_images(Path(tmp), args.images)
        plain = DataLoader(PlainDataset(items, args.size, config.mean, config.std), batch_size=args.batch_size,
                           shuffle=True, num_workers=args.workers, persistent_workers=args.workers > 0)
        ours = make_loader(items, config, True, args.batch_size, args.workers, EpochSampler(len(items), 0, SINGLE))
        runs = {  # name → (loader, what makes its batch model-ready), all timed
            "plain PIL -> ToTensor": (plain, lambda images: images),
            "ours, uint8 batch (float on the GPU)": (ours, lambda images: images),
            "ours, float batch on this CPU": (ours, lambda images: normalize_batch(images, config)),
        }
        rates = dict.fromkeys(runs, 0.0)
        for _ in range(args.repeat):  # alternating evens out other load on the machine
            for name, (loader, finish) in runs.items():
                rates[name] = max(rates[name], images_per_second(loader, args.epochs, finish))
    print(f"data pipeline at {args.size} px, {args.workers} workers, batch {args.batch_size}, "
          f"{args.images} images of 500x375 x {args.epochs} passes, best of {args.repeat}")
    plain_rate = rates["plain PIL -> ToTensor"]
    for name, rate in rates.items():
        print(f"{name:38s} {rate:8.1f} images/s  {rate / plain_rate:5.2f}x plain")

if __name__ == "__main__":
    main()
