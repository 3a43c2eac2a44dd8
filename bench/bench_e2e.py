"""Images per second of the real training step fed by the real loader, next to the loader alone and the model alone
on the same batches, so that the bottleneck shows on any machine.

    python bench/bench_e2e.py                              # the paper's resnet101 at 448 px, on the GPU if any
    python bench/bench_e2e.py --model resnet18 --img-size 224 --batch-size 16 --steps 12 --device cpu

Writes steps x batch-size VOC-sized JPEGs (500x375: shapes on a gradient with noise, quality 90, about 70 KB
where VOC's average 90 KB) to a temp folder and builds the training objects of `csra train` on them (the paper's
SGD, random weights). Then: the loader alone (make_loader with EpochSampler and the train transform: one pass, no
model), the model alone (train_step on the same batches held in memory) and both together (train_one_epoch).
Each is timed after a warm-up pass (worker start, cuDNN autotuning, compilation), R times in turn, and the best
kept. Not a test: the figures depend on the
machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from csra.data.loading import loader_workers
from csra.data.prepared import TrainData
from csra.distributed import SINGLE
from csra.evaluate.predict import resolve_device
from csra.train.config import TrainConfig
from csra.train.loop import Training, build_training, train_one_epoch, train_step
from stages.common import machine

CLASSES = [f"class{i}" for i in range(20)]
PAPER = dict(  # the paper's optimiser; the schedule does not change the speed
    pretrained="none", num_heads=1, lam=0.1, optimizer="sgd", epochs=3, lr=0.01, classifier_lr_mult=10.0,
    momentum=0.9, weight_decay=1e-4, warmup_epochs=2, step_size=4, gamma=0.1, loss="bce", label_smoothing=0.0,
    asl_gamma_neg=4.0, asl_gamma_pos=0.0, asl_clip=0.05, ema_decay=0.0, sync_bn=False, deterministic=False, seed=0,
    tune_thresholds=False,
)


def photo(rng: np.random.Generator, width: int = 500, height: int = 375) -> Image.Image:
    """A stand-in for a photo: a colour gradient, a dozen filled shapes, softened edges and sensor-like noise."""
    yy, xx = np.mgrid[0:height, 0:width] / width
    slope = rng.uniform(-150, 150, size=(2, 3))
    image = Image.fromarray(np.clip(128 + xx[..., None] * slope[0] + yy[..., None] * slope[1], 0, 255)
                            .astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.integers(0, width - 20), rng.integers(0, height - 20)
        box = (x0, y0, x0 + rng.integers(20, 200), y0 + rng.integers(20, 150))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float32)
    return Image.fromarray(np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8))


def make_items(folder: Path, count: int) -> list[dict]:
    rng = np.random.default_rng(0)
    items = []
    for i in range(count):
        path = folder / f"{i:06d}.jpg"
        photo(rng).save(path, quality=90)
        items.append({"img_path": str(path), "target": rng.integers(0, 2, len(CLASSES)).tolist()})
    return items


def wait(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_alone(trainer: Training) -> float:
    """Images per second of one pass of the training loader (its workers already started)."""
    count, start = 0, time.perf_counter()
    for batch in trainer.loader:
        count += len(batch[0])
    return count / (time.perf_counter() - start)


def model_alone(trainer: Training, batches: list) -> float:
    """Images per second of train_step over batches already in memory."""
    trainer.net.train()
    wait(trainer.device)
    start = time.perf_counter()
    for batch in batches:
        loss = train_step(trainer, batch)
    loss.item()  # waits for the last step
    return sum(len(b[0]) for b in batches) / (time.perf_counter() - start)


def run(args: argparse.Namespace, items: list[dict]) -> tuple[dict[str, float], Training, TrainConfig]:
    device = resolve_device(args.device)
    workers = loader_workers(args.workers, *machine(), device.type)
    cfg = TrainConfig(model=args.model, img_size=args.img_size, batch_size=args.batch_size, amp=args.amp,
                      channels_last=args.channels_last, compile=args.compile, num_workers=workers,
                      device=str(device), **PAPER)
    trainer = build_training(cfg, TrainData(items, items[:1], CLASSES, "coco"), device, SINGLE)
    batches = list(trainer.loader)  # warm-up: starts the workers
    model_alone(trainer, batches[:2])  # warm-up: autotuning, compilation
    train_one_epoch(trainer, 0, 1)  # warm-up of both together
    rates = dict.fromkeys(("loader alone", "model alone", "loader + model"), 0.0)
    for _ in range(args.repeat):  # alternating evens out other load on the machine; the best of each is kept
        for label, rate in (("loader alone", lambda: loader_alone(trainer)),
                            ("model alone", lambda: model_alone(trainer, batches)),
                            ("loader + model", lambda: train_one_epoch(trainer, 0, 1).images_per_s)):
            rates[label] = max(rates[label], rate())
    return rates, trainer, cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet101")
    parser.add_argument("--img-size", type=int, default=448)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", default="auto", help="loader processes: auto (as csra train picks) or N")
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", action="store_true", help="autocast (CUDA only)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--repeat", type=int, default=3, help="time each R times, alternating; keep the best")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        items = make_items(Path(tmp), args.steps * args.batch_size)
        rates, trainer, cfg = run(args, items)
    device = trainer.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.model} at {args.img_size} px, batch {args.batch_size}, {args.steps} steps per pass (best of "
          f"{args.repeat}), "
          f"{cfg.num_workers} loader workers, {machine()[0]} cores, {device} ({name}); "
          f"amp {args.amp}, channels_last {args.channels_last}, compile {args.compile}")
    for label, rate in rates.items():
        print(f"{label:16s}{rate:9.1f} images/s")
    slow = min(("loader alone", "model alone"), key=rates.get)
    print(f"bottleneck: the {slow.split()[0]}; together they reach "
          f"{rates['loader + model'] / rates[slow]:.0%} of it")


if __name__ == "__main__":
    main()
