"""The epoch mechanics of a training run: Trainer steps through the epochs (AMP, channels_last, compile, EMA, DDP),
validates after each, and holds everything a resume needs in its state_dict."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from csra.backends import set_kernels
from csra.data.loading import make_loader, prepare_batch
from csra.data.prepared import TrainData
from csra.distributed import (
    SINGLE,
    DistContext,
    EpochSampler,
    all_sum,
    any_rank,
    broadcast_buffers,
    earliest_on_any_rank,
)
from csra.errors import CSRAError
from csra.evaluate.metrics import average_precision, mean_average_precision
from csra.evaluate.predict import predict, resolve_device
from csra.model.network import CSRAModel
from csra.train.config import TrainConfig
from csra.train.losses import make_criterion
from csra.train.optim import make_optimizer, make_scheduler
from csra.train.state import STATE_FORMAT, rng_state, set_rng_state

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


class Trainer:
    """One training run. `state_dict()` holds everything a resume needs: weights, EMA, optimiser, scheduler,
    grad scaler, epoch, history, best epoch and RNG states (plain tensors and numbers: weights-only loadable)."""

    def __init__(self, model: CSRAModel, data: TrainData, cfg: TrainConfig, ctx: DistContext = SINGLE,
                 progress: bool = False):
        if cfg.batch_size % ctx.world_size:
            raise CSRAError(f"train.batch_size {cfg.batch_size} must divide by the {ctx.world_size} processes")
        self.cfg, self.ctx, self.data, self.progress = cfg, ctx, data, progress
        self.device = resolve_device(cfg.device, ctx.local_rank)
        set_kernels(cfg.deterministic)
        self.amp_dtype = amp_dtype_for(self.device, cfg.amp)
        self.channels_last = cfg.channels_last
        self.criterion = make_criterion(cfg)
        if ctx.enabled and cfg.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device, memory_format=torch.channels_last if self.channels_last else
                              torch.contiguous_format)
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
                    if cfg.ema_decay > 0 else None)
        self.sampler = EpochSampler(len(data.train_items), cfg.seed, ctx)
        self.loader = make_loader(data.train_items, model.config, True, cfg.batch_size // ctx.world_size,
                                  cfg.num_workers, self.sampler, data.skip_bad, self.device.type)
        self.optimizer = make_optimizer(self.model, cfg)
        self.scheduler = make_scheduler(self.optimizer, len(self.loader), cfg)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        net: nn.Module = self.model
        if cfg.compile:
            net = torch.compile(net)
        if ctx.enabled:
            net = DistributedDataParallel(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.net = net
        self.epoch, self.history, self.best = 0, [], {"epoch": 0, "val_mAP": -1.0}

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated and saved: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT, "epoch": self.epoch, "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "history": self.history, "best": self.best, "rng": rng_state(),
            "world_size": self.ctx.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if state["ema"] is None:
                raise CSRAError("the saved training state has no EMA weights, but train.ema_decay is set")
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.history, self.best = state["epoch"], list(state["history"]), dict(state["best"])
        set_rng_state(state["rng"])

    def train_step(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """One optimisation step on a loader batch (uint8 images, targets, …); returns the loss on the device,
        unread: nothing here waits for the GPU."""
        images = prepare_batch(batch[0], self.model.config, self.device, self.channels_last)
        targets = batch[1].to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            logits = self.net(images)
        loss = self.criterion(logits.float(), targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss.detach()

    def train_one_epoch(self) -> tuple[float, float, float]:
        """One pass over this rank's share; returns (mean loss over all ranks, backbone lr of the last step,
        images per second over all ranks). The losses are read every SYNC_EVERY steps and at the end; a NaN or
        infinite one on any rank then stops every rank, naming the first such step."""
        self.net.train()
        self.sampler.set_epoch(self.epoch)
        losses, lr = LossLog(), 0.0
        start = time.perf_counter()
        bar = tqdm(self.loader, desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}", unit="batch", leave=False,
                   disable=not (self.progress and self.ctx.is_main), mininterval=1.0, dynamic_ncols=True)
        for step, batch in enumerate(bar):
            if batch is not None:  # None: every image of the batch skipped as unreadable
                lr = self.optimizer.param_groups[0]["lr"]
                losses.add(step, self.train_step(batch), len(batch[0]))
            if (step + 1) % SYNC_EVERY == 0:
                self.read_losses(losses, bar, lr, start)
        self.read_losses(losses, bar, lr, start)
        bar.close()
        if any_rank(losses.count == 0, self.ctx, self.device):
            raise CSRAError(f"epoch {self.epoch + 1}: none of the training images could be read")
        broadcast_buffers(self.model, self.ctx)
        if self.ema is not None:
            broadcast_buffers(self.ema, self.ctx)
        total, count = all_sum([losses.total, float(losses.count)], self.ctx, self.device)
        return total / count, lr, count / (time.perf_counter() - start)

    def read_losses(self, losses: LossLog, bar: tqdm, lr: float, start: float) -> None:
        """The host's one look at the steps since the last: a non-finite loss on any rank stops every rank
        (NonFiniteLoss with the epoch and the first such step); else the progress bar shows the mean so far."""
        bad = losses.read()
        first = earliest_on_any_rank(bad[0] if bad else None, self.ctx, self.device)
        if first is not None:
            value = bad[1] if bad and bad[0] == first else "not finite on another process"
            raise NonFiniteLoss(f"training loss is {value} at epoch {self.epoch + 1}, step {first}; lower train.lr")
        if not bar.disable and losses.count:
            rate = losses.count * self.ctx.world_size / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{losses.total / losses.count:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}",
                            refresh=False)

    def validate(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores, targets) of the validation items: the one prediction path, float32 as evaluate scores."""
        cfg = self.cfg
        scored = predict(self.eval_model, self.data.val_items, self.model.config, cfg.batch_size, cfg.num_workers,
                         self.device, self.ctx, self.data.skip_bad)
        return scored.scores, scored.targets

    def fit(self, on_epoch: Callable[[dict, Trainer, tuple[np.ndarray, np.ndarray]], None] | None = None) -> None:
        """Train from self.epoch to cfg.epochs. After each epoch (on the main process) on_epoch(row, self, val
        scores/targets) is called, row = {epoch, train_loss, lr, images_per_s, val_mAP, best_epoch}."""
        for _ in range(self.epoch, self.cfg.epochs):
            loss, lr, rate = self.train_one_epoch()
            self.epoch += 1
            scores, targets = self.validate()
            val_map = 100.0 * mean_average_precision(average_precision(scores, targets, self.data.label_format))
            if val_map > self.best["val_mAP"]:
                self.best = {"epoch": self.epoch, "val_mAP": val_map}
            row = {"epoch": self.epoch, "train_loss": loss, "lr": lr, "images_per_s": rate, "val_mAP": val_map,
                   "best_epoch": self.best["epoch"]}
            self.history.append(row)
            if on_epoch is not None and self.ctx.is_main:
                on_epoch(row, self, (scores, targets))
