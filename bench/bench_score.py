"""Photos per second and peak memory of `csra score` (Ray Data) against the in-process API on the same photos.

    python bench/bench_score.py [--photos 2000] [--large 20000] [--batch-size 64] [--csra PATH]

Writes --photos VOC-size JPEGs (500 x 375, photo-like: smooth colour noise, shapes, grain; about 60 kB each) in a
temp folder and a random checkpoint of the pipeline's model (resnet18, CSRA with 1 head, λ 0.1, the built-in
dataset's 10 classes, img_size 96; nothing is trained: the speed is the same as the trained model's). Then:

- the in-process API: `csra.load_model(ckpt).score(files, batch_size=B)` over the photos, in a subprocess, its
  photos/s without and with its model load, its peak RSS from getrusage;
- `csra score DIR --out OUT --checkpoint CKPT --batch-size B`, in a subprocess: the photos/s and Ray's start-up it
  prints, its wall time, and the peak memory of its whole process tree (the driver, Ray's GCS, raylet and workers),
  sampled every 0.25 s as the sum of each process's PSS (shared pages counted once over the processes);
- the same `csra score` over --large photos (copies of the first ones, hard-linked: the same decoding work), for
  the peak memory with ten times the photos.

Prints the load average before each measurement: the cores may be shared. Not a test: numbers depend on the
machine."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image, ImageDraw

from csra.data.synthetic import CLASSES
from csra.model.checkpoints import save_checkpoint
from csra.model.network import ModelConfig, build_model

REPO = Path(__file__).resolve().parents[1]
UNIQUE = 500  # distinct photos; the rest are hard links to them


def photo(seed: int, width: int = 500, height: int = 375) -> Image.Image:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = (int(v) for v in rng.integers(20, 160, size=2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=tuple(int(v) for v in rng.integers(0, 256, size=3)))
    pixels = np.asarray(image).astype(np.int16) + rng.integers(-6, 7, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_photos(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        path = folder / f"photo_{i:06d}.jpg"
        if i < UNIQUE:
            photo(i).save(path, quality=90)
        else:
            os.link(folder / f"photo_{i % UNIQUE:06d}.jpg", path)
        paths.append(path)
    return paths


def write_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    config = ModelConfig.create("resnet18", len(CLASSES), num_heads=1, lam=0.1, img_size=96)
    return save_checkpoint(path, build_model(config).eval(), list(CLASSES), {})


API = """
import resource, sys, time
from pathlib import Path
import csra
files = sorted(Path(sys.argv[1]).glob("*.jpg"))
began = time.monotonic()
model = csra.load_model(sys.argv[2], device="cpu")
loaded = time.monotonic()
predictions = model.score(files, batch_size=int(sys.argv[3]))
done = time.monotonic()
assert len(predictions) == len(files)
print(len(files), loaded - began, done - loaded, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""


def tree_memory(root: psutil.Process) -> float:
    """GiB: the PSS of root and every process below it."""
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total / 2**30


def run_score(csra: str, photos: Path, ckpt: Path, out: Path, batch_size: int, env: dict) -> dict:
    began = time.monotonic()
    process = subprocess.Popen([csra, "score", str(photos), "--out", str(out), "--checkpoint", str(ckpt),
                                "--batch-size", str(batch_size), "--params", str(REPO / "params.yaml")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               start_new_session=True)
    peak, root = [0.0], psutil.Process(process.pid)

    def sample() -> None:
        while process.poll() is None:
            try:
                peak[0] = max(peak[0], tree_memory(root))
            except psutil.NoSuchProcess:
                return
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    sampler.join()
    wall = time.monotonic() - began
    if process.returncode != 0:
        sys.exit(f"csra score failed:\n{output}")
    found = re.search(r"scored (\d+) photos in ([\d.]+) s \(([\d.]+) photos/s; ([\d.]+) photos/s after the first "
                      r"batch, ([\d.]+) s in\).*start-up ([\d.]+) s", output)
    return {"photos": int(found[1]), "seconds": float(found[2]), "rate": float(found[3]), "steady": float(found[4]),
            "warm_up": float(found[5]), "start": float(found[6]), "wall": wall, "peak": peak[0], "output": output}


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--large", type=int, default=20000, help="photos of the memory run (0: none)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--csra", default=str(Path(sys.executable).parent / "csra"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-score-") as folder:
        root = Path(folder)
        began = time.monotonic()
        files = write_photos(root / "photos", args.photos)
        ckpt = write_checkpoint(root / "model.pt")
        size = sum(f.stat().st_size for f in files[:UNIQUE]) / min(UNIQUE, len(files)) / 1000
        print(f"{len(files)} JPEGs 500x375 (mean {size:.0f} kB), resnet18 at 96 px, {len(CLASSES)} classes "
              f"({time.monotonic() - began:.0f} s to write); {os.cpu_count()} CPUs")
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
               "MLFLOW_DISABLE_TELEMETRY": "true"}
        print(f"load average {load()}")
        api = subprocess.run([sys.executable, "-c", API, str(root / "photos"), str(ckpt), str(args.batch_size)],
                             capture_output=True, text=True, check=True, env=env).stdout.split()
        count, loading, seconds, peak = int(api[0]), float(api[1]), float(api[2]), float(api[3])
        api_rate = count / seconds
        print(f"in-process API (csra.load_model(…).score, batch_size {args.batch_size}): {count} photos in "
              f"{seconds:.1f} s = {api_rate:.1f} photos/s (model load {loading:.1f} s apart); peak RSS "
              f"{peak:.2f} GiB")
        print(f"load average {load()}")
        scored = run_score(args.csra, root / "photos", ckpt, root / "out", args.batch_size, env)
        api_loaded = count / (loading + seconds)
        print(f"csra score: {scored['photos']} photos in {scored['seconds']:.1f} s after Ray's start-up = "
              f"{scored['rate']:.1f} photos/s, the actors' model load included ({scored['rate'] / api_loaded:.2f}x the "
              f"API's {api_loaded:.1f} photos/s with its model load); after the first batch ({scored['warm_up']:.1f} "
              f"s in: the actors loading the model) {scored['steady']:.1f} photos/s "
              f"({scored['steady'] / api_rate:.2f}x the API without its load); Ray's start-up "
              f"{scored['start']:.1f} s apart; the whole command {scored['wall']:.1f} s; peak memory of the process "
              f"tree (PSS) {scored['peak']:.2f} GiB")
        print("  " + scored["output"].strip().replace("\n", "\n  "))
        if args.large:
            big = root / "large"
            big.mkdir()
            for i in range(args.large):
                os.link(files[i % len(files)], big / f"photo_{i:06d}.jpg")
            print(f"load average {load()}")
            large = run_score(args.csra, big, ckpt, root / "out-large", args.batch_size, env)
            print(f"csra score: {large['photos']} photos in {large['seconds']:.1f} s = {large['rate']:.1f} "
                  f"photos/s; peak memory of the process tree (PSS) {large['peak']:.2f} GiB (with {args.photos}: "
                  f"{scored['peak']:.2f} GiB)")
        print(f"load average {load()}")


if __name__ == "__main__":
    main()
