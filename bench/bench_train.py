"""Training and evaluation throughput (images/s): the fast settings (AMP on CUDA, channels_last, torch.compile)
against plain fp32 eager, same model, same machine, synthetic tensors (no data loading).

    python bench/bench_train.py                        # resnet101 at 448 and vit_b16_224 at 224, on the GPU if any
    python bench/bench_train.py --device cpu --steps 3 --batch-size 4
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from csra.evaluate.predict import resolve_device
from csra.model.network import ModelConfig, build_model
from csra.train.config import TrainConfig
from csra.train.loop import amp_dtype_for
from csra.train.optim import make_optimizer

PAPER = TrainConfig(  # the paper's optimiser; the schedule does not matter for throughput
    model="resnet101", pretrained="none", head="csra", num_heads=4, lam=0.5, img_size=448, optimizer="sgd", epochs=30,
    batch_size=16, lr=0.01, classifier_lr_mult=10.0, momentum=0.9, weight_decay=1e-4, warmup_epochs=2, step_size=4,
    gamma=0.1, loss="bce", label_smoothing=0.0, asl_gamma_neg=4.0, asl_gamma_pos=0.0, asl_clip=0.05, ema_decay=0.0,
    amp=True, channels_last=True, compile=False, sync_bn=False, deterministic=False, num_workers=0, device="auto",
    seed=0, tune_thresholds=False,
)


def throughput(name: str, img_size: int, device: torch.device, fast: bool, compile_model: bool, batch_size: int,
               steps: int) -> tuple[float, float]:
    """(training images/s, evaluation images/s) after one warm-up step."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.create(name, 80, 4, 0.5, img_size)).to(device)
    memory = torch.channels_last if fast else torch.contiguous_format
    model = model.to(memory_format=memory)
    optimizer = make_optimizer(model, PAPER)
    amp_dtype = amp_dtype_for(device, fast)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    net = torch.compile(model) if compile_model else model
    images = torch.rand(batch_size, 3, img_size, img_size, device=device).contiguous(memory_format=memory)
    targets = (torch.rand(batch_size, 80, device=device) > 0.9).float()

    def train_step() -> None:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = net(images)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    @torch.no_grad()
    def eval_step() -> None:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            net(images)

    rates = []
    for step, training in ((train_step, True), (eval_step, False)):
        net.train(training)
        step()  # warm-up (and compilation)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--models", default="resnet101:448,vit_b16_224:224")
    parser.add_argument("--compile", action="store_true", help="also torch.compile the fast variant")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True
    label = "AMP + channels_last" if device.type == "cuda" else "channels_last"
    label += " + compile" if args.compile else ""
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"batch {args.batch_size}, {args.steps} steps; fast = {label}")
    print(f"{'model':<14}{'px':>5}  {'train fp32':>11}{'train fast':>11}{'ratio':>7}  "
          f"{'eval fp32':>10}{'eval fast':>10}{'ratio':>7}   (images/s)")
    for spec in args.models.split(","):
        name, size = spec.split(":")
        plain = throughput(name, int(size), device, False, False, args.batch_size, args.steps)
        fast = throughput(name, int(size), device, True, args.compile, args.batch_size, args.steps)
        print(f"{name:<14}{size:>5}  {plain[0]:>11.3g}{fast[0]:>11.3g}{fast[0] / plain[0]:>7.2f}  "
              f"{plain[1]:>10.3g}{fast[1]:>10.3g}{fast[1] / plain[1]:>7.2f}")


if __name__ == "__main__":
    main()
