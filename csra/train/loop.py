"""The steps of a training run, each a function: build_training (the model and what trains it: EMA, optimiser,
scheduler, grad scaler, loader; AMP, channels_last, compile, DDP), train_one_epoch and validate. csra.train.run
calls them in order, epoch by epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from csra.backends import set_kernels
from csra.data.loading import Batch, make_loader, prepare_batch
from csra.data.prepared import TrainData
from csra.distributed import (
    SINGLE,
    DistContext,
    EpochSampler,
    all_sum,
    any_rank,
    broadcast_buffers,
    earliest_on_any_rank,
    gather_indices,
)
from csra.errors import CSRAError
from csra.evaluate.predict import predict
from csra.model.network import CSRAModel, ModelConfig, build_model
from csra.train.config import TrainConfig
from csra.train.losses import make_criterion
from csra.train.optim import make_optimizer, make_scheduler
from csra.train.state import seed_everything

SYNC_EVERY = 25  # training steps between the host's looks at the loss (progress bar, NaN stop); no sync between


def amp_dtype_for(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 on GPUs that support it, else fp16 (with a grad scaler); None (fp32) on the CPU or when disabled."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class NonFiniteLoss(CSRAError):
    """The loss became NaN or infinite; the last good state stays on disk."""


class LossLog:
    """An epoch's losses without a host sync per step: the steps since the last read stay on the device; read()
    fetches them at once, adds them to the epoch's total (as the per-step floats, in step order) and returns the
    first non-finite one as (step, value), if any."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, torch.Tensor, int]] = []  # (step, loss on the device, images)
        self.total, self.count = 0.0, 0

    def add(self, step: int, loss: torch.Tensor, size: int) -> None:
        self.pending.append((step, loss, size))
        self.count += size

    def read(self) -> tuple[int, float] | None:
        pending, self.pending = self.pending, []
        if not pending:
            return None
        values = torch.stack([loss for _, loss, _ in pending]).tolist()  # the one host sync
        for (step, _, size), value in zip(pending, values):
            if not math.isfinite(value):
                return step, value
            self.total += value * size
        return None


class EpochStats(NamedTuple):
    """What one training epoch reports: the mean loss over all ranks, the backbone lr of the last step, the
    images per second over all ranks and the item indices of the images all ranks skipped as unreadable."""

    loss: float
    lr: float
    images_per_s: float
    skipped: list[int]


@dataclass
class Training:
    """The objects a run trains with, on one device. state_dict() holds what of them a resume needs: the weights,
    the EMA, the optimiser, the scheduler and the grad scaler (plain tensors and numbers: weights-only loadable)."""

    model: CSRAModel
    ema: AveragedModel | None
    net: nn.Module  # the model as trained: compiled and/or wrapped in DDP
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    sampler: EpochSampler
    loader: DataLoader
    device: torch.device
    ctx: DistContext
    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated and saved: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self) -> dict[str, object]:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict() if self.ema is not None else None,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if state["ema"] is None:
                raise CSRAError("the saved training state has no EMA weights, but train.ema_decay is set")
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


def build_training(cfg: TrainConfig, data: TrainData, device: torch.device, ctx: DistContext = SINGLE,
                   initial_weights: bool = True) -> Training:
    """Every RNG seeded from cfg.seed, the model (with cfg.pretrained's weights when initial_weights, else none: a
    resume loads its own), every RNG seeded again, then what trains it on device."""
    seed_everything(cfg.seed)
    config = ModelConfig.create(cfg.model, len(data.classes), cfg.num_heads, cfg.lam, cfg.img_size, cfg.head)
    model = build_model(config, cfg.pretrained if initial_weights else "none")
    seed_everything(cfg.seed)
    return make_training(model, data, cfg, device, ctx)


def make_training(model: CSRAModel, data: TrainData, cfg: TrainConfig, device: torch.device,
                  ctx: DistContext = SINGLE) -> Training:
    """model moved to device, with its EMA, loss, optimiser, per-step scheduler, grad scaler and this rank's loader."""
    if cfg.batch_size % ctx.world_size:
        raise CSRAError(f"train.batch_size {cfg.batch_size} must divide by the {ctx.world_size} processes")
    set_kernels(cfg.deterministic)
    amp_dtype = amp_dtype_for(device, cfg.amp)
    criterion = make_criterion(cfg)
    if ctx.enabled and cfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
           if cfg.ema_decay > 0 else None)
    sampler = EpochSampler(len(data.train_items), cfg.seed, ctx)
    loader = make_loader(data.train_items, model.config, True, cfg.batch_size // ctx.world_size, cfg.num_workers,
                         sampler, data.skip_bad, device.type)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, len(loader), cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    net: nn.Module = model
    if cfg.compile:
        net = torch.compile(net)
    if ctx.enabled:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    return Training(model, ema, net, criterion, optimizer, scheduler, scaler, sampler, loader, device, ctx, amp_dtype,
                    cfg.channels_last)


def train_step(t: Training, batch: Batch) -> torch.Tensor:
    """One optimisation step on a loader batch of readable images; returns the loss on the device, unread: nothing
    here waits for the GPU."""
    images = prepare_batch(batch.images, t.model.config, t.device, t.channels_last)
    targets = batch.targets.to(t.device, non_blocking=True)
    with torch.autocast(t.device.type, dtype=t.amp_dtype or torch.float32, enabled=t.amp_dtype is not None):
        logits = t.net(images)
    loss = t.criterion(logits.float(), targets)
    t.optimizer.zero_grad(set_to_none=True)
    t.scaler.scale(loss).backward()
    t.scaler.step(t.optimizer)
    t.scaler.update()
    t.scheduler.step()
    if t.ema is not None:
        t.ema.update_parameters(t.model)
    return loss.detach()


def train_one_epoch(t: Training, epoch: int, epochs: int, progress: bool = False) -> EpochStats:
    """Epoch `epoch` (0-based, of `epochs`): one pass over this rank's share. The losses are read every SYNC_EVERY
    steps and at the end; a NaN or infinite one on any rank then stops every rank (NonFiniteLoss), naming the first
    such step."""
    t.net.train()
    t.sampler.set_epoch(epoch)
    losses, lr, skipped = LossLog(), 0.0, set()
    start = time.perf_counter()
    bar = tqdm(t.loader, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False,
               disable=not (progress and t.ctx.is_main), mininterval=1.0, dynamic_ncols=True)
    for step, batch in enumerate(bar):
        skipped.update(batch.skipped)
        if batch.images is not None:  # None: every image of the batch skipped as unreadable
            lr = t.optimizer.param_groups[0]["lr"]
            losses.add(step, train_step(t, batch), len(batch.images))
        if (step + 1) % SYNC_EVERY == 0:
            read_losses(t, losses, epoch, bar, lr, start)
    read_losses(t, losses, epoch, bar, lr, start)
    bar.close()
    if any_rank(losses.count == 0, t.ctx, t.device):
        raise CSRAError(f"epoch {epoch + 1}: none of the training images could be read")
    broadcast_buffers(t.model, t.ctx)
    if t.ema is not None:
        broadcast_buffers(t.ema, t.ctx)
    total, count = all_sum([losses.total, float(losses.count)], t.ctx, t.device)
    elapsed = time.perf_counter() - start
    return EpochStats(total / count, lr, count / elapsed, gather_indices(sorted(skipped), t.ctx))


def read_losses(t: Training, losses: LossLog, epoch: int, bar: tqdm, lr: float, start: float) -> None:
    """The host's one look at the steps since the last: a non-finite loss on any rank stops every rank
    (NonFiniteLoss with the epoch and the first such step); else the progress bar shows the mean so far."""
    bad = losses.read()
    first = earliest_on_any_rank(bad[0] if bad else None, t.ctx, t.device)
    if first is not None:
        value = bad[1] if bad and bad[0] == first else "not finite on another process"
        raise NonFiniteLoss(f"training loss is {value} at epoch {epoch + 1}, step {first}; lower train.lr")
    if not bar.disable and losses.count:
        rate = losses.count * t.ctx.world_size / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{losses.total / losses.count:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}", refresh=False)


def validate(t: Training, data: TrainData, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(scores, targets) of the validation items with the eval model: the one prediction path, float32 as evaluate
    scores."""
    scored = predict(t.eval_model, data.val_items, t.model.config, cfg.batch_size, cfg.num_workers, t.device, t.ctx,
                     data.skip_bad)
    return scored.scores, scored.targets
