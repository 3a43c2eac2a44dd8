"""Wall time and peak memory (RSS) of the whole `csra demo` process on one very large JPEG.

    python bench/bench_demo_memory.py [--width W --height H | --megapixels-100] [--quality Q] [--csra PATH]

Writes one photo-like JPEG (default 10000 x 10000; --megapixels-100: 12000 x 8400) made of smooth noise, fine
grain and shapes, and a random resnet18 checkpoint (the 10 synthetic classes, img_size 96; nothing is trained),
then runs `csra demo --checkpoint CKPT --images DIR --out-dir OUT --dataset synthetic` once in a subprocess and
prints its wall time and peak RSS (getrusage of the finished child). Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from csra.data.formats import CLASSES_FILE, write_classes
from csra.data.synthetic import CLASSES
from csra.model.checkpoints import save_checkpoint
from csra.model.network import ModelConfig, build_model

REPO = Path(__file__).resolve().parents[1]


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour noise (upsampled from 1/64 scale) plus fine grain, with a few hundred filled shapes."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 64), max(2, width // 64), 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(300):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = (int(v) for v in rng.integers(width // 100, width // 8, size=2))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=colour)
    pixels = np.asarray(image).copy()
    for rows in range(0, height, 1024):  # grain in strips: no full-size int16 copy
        strip = pixels[rows : rows + 1024]
        grain = rng.integers(-12, 13, strip.shape, dtype=np.int16)
        strip[...] = np.clip(strip + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def write_inputs(root: Path, width: int, height: int, quality: int) -> tuple[Path, Path]:
    """(checkpoint, image folder) under root, plus data/prepared/classes.txt for --dataset synthetic."""
    images = root / "images"
    images.mkdir()
    photo_like(width, height).save(images / "large.jpg", quality=quality)
    torch.manual_seed(0)  # the same random weights, so the same predicted classes, in every run
    config = ModelConfig.create("resnet18", len(CLASSES), num_heads=1, lam=0.1, img_size=96)
    checkpoint = save_checkpoint(root / "random.pt", build_model(config), CLASSES, {})
    write_classes(root / "data" / "prepared" / CLASSES_FILE, CLASSES)
    return checkpoint, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=10000)
    parser.add_argument("--height", type=int, default=10000)
    parser.add_argument("--megapixels-100", action="store_true", help="12000 x 8400 instead")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("--csra", default=str(Path(sys.executable).parent / "csra"), help="the csra command")
    parser.add_argument("--params", default=str(REPO / "params.yaml"), help="params file passed to csra demo")
    args = parser.parse_args()
    width, height = (12000, 8400) if args.megapixels_100 else (args.width, args.height)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint, images = write_inputs(root, width, height, args.quality)
        size_mb = (images / "large.jpg").stat().st_size / 1e6
        command = [args.csra, "demo", "--checkpoint", str(checkpoint), "--images", str(images),
                   "--out-dir", str(root / "out"), "--dataset", "synthetic", "--params", args.params]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        start = time.perf_counter()
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode:
            sys.exit(f"csra demo failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2  # kB on Linux
        pngs = sorted((root / "out" / "heatmaps").rglob("*.png"))
        sizes = set()
        for png in pngs:
            with Image.open(png) as image:
                sizes.add(image.size)
    print(f"{width} x {height} JPEG ({width * height / 1e6:.0f} MP, {size_mb:.1f} MB), {len(pngs)} heatmap PNGs "
          f"of sizes {sorted(sizes)}")
    print(f"  csra demo: {wall:.1f} s wall, peak RSS {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
