"""train(cfg, data, paths, device) -> TrainResult: one training run, top to bottom — the model and its initial
weights, then per epoch: train, validate, keep the best epoch's checkpoint (with per-class thresholds), save the
resumable state, tell the caller; at the end the caller's last word and the state's removal. The caller records
what it wants through a TrainHooks object; nothing here knows of MLflow, params files or the CLI."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, TypedDict, get_type_hints

import numpy as np
import torch

from csra.data.prepared import SkippedImage, TrainData
from csra.distributed import SINGLE, DistContext, from_main, init_distributed, shutdown
from csra.errors import CSRAError
from csra.evaluate.metrics import average_precision, mean_average_precision, tune_thresholds
from csra.evaluate.predict import resolve_device
from csra.model.checkpoints import save_checkpoint
from csra.train.config import TrainConfig
from csra.train.loop import NonFiniteLoss, build_training, train_one_epoch, validate
from csra.train.state import STATE_FORMAT, fingerprint, rng_state, save_state, set_rng_state

log = logging.getLogger(__name__)
TIMING = "timing"  # a history column's role: a wall-clock figure, which a DVC-tracked file never holds


class EpochRow(TypedDict):
    """One epoch of a run's history."""

    epoch: int
    train_loss: float
    lr: float
    images_per_s: Annotated[float, TIMING]
    val_mAP: float
    best_epoch: int


TIMINGS = tuple(name for name, hint in get_type_hints(EpochRow, include_extras=True).items()
                if TIMING in getattr(hint, "__metadata__", ()))


class Best(TypedDict):
    """The best epoch so far and its validation mAP (epoch 0, mAP -1: none yet)."""

    epoch: int
    val_mAP: float


@dataclass(frozen=True)
class TrainPaths:
    """Where a run writes: the best epoch's checkpoint (the one checkpoint a run keeps) and the state that lives
    only while the run is unfinished (the last epoch's weights among it)."""

    best: Path
    state: Path


@dataclass(frozen=True)
class TrainResult:
    """A finished run: one history row per epoch, the best epoch and its validation mAP, and the epoch it resumed
    after (0 for a fresh run)."""

    history: list[EpochRow]
    best_epoch: int
    best_val_mAP: float
    resumed_from: int
    paths: TrainPaths

    @property
    def final(self) -> EpochRow:
        return self.history[-1]


class TrainHooks:
    """What the caller overrides to record a run; called on the main process only. on_epoch: after each epoch, once
    its checkpoint and state are written. on_end: after the last epoch, before the state file is removed — if it
    raises, the state stays and the run can be resumed."""

    def on_skipped(self, epoch: int, images: list[SkippedImage]) -> None:
        """Called after an epoch (before on_epoch) whose loaders met training images they could not read and left
        out, with those not met before in this process (data.bad_images: skip)."""

    def on_epoch(self, row: EpochRow, history: list[EpochRow]) -> None:
        """Called with the epoch's history row and the whole history so far."""

    def on_end(self, result: TrainResult) -> None:
        """Called once with the finished run."""


def thresholds(cfg: TrainConfig, data: TrainData, scores: np.ndarray,
               targets: np.ndarray) -> list[float | None] | None:
    """The per-class thresholds tuned on the validation scores (None for a class without one), if cfg asks."""
    if not cfg.tune_thresholds:
        return None
    return [None if math.isnan(t) else float(t) for t in tune_thresholds(scores, targets, data.label_format)]


def train(cfg: TrainConfig, data: TrainData, paths: TrainPaths, *, device: torch.device | None = None,
          resume: dict | None = None, hooks: TrainHooks | None = None, params: dict[str, object] | None = None,
          extra_state: dict[str, object] | None = None, ctx: DistContext = SINGLE,
          progress: bool = False) -> TrainResult:
    """Train CSRA on data on device (default: cfg.device for this process), validating after every epoch; process 0
    writes paths.best whenever the validation mAP improves and paths.state after every epoch. resume is a state
    from csra.train.state.find_resume (under torchrun process 0's, the same on every rank; whether its best epoch's
    checkpoint is still there is process 0's answer too). Every checkpoint records cfg.recipe() under 'recipe' and
    params (the caller's settings the recipe does not hold) under 'params'; extra_state goes in the saved state
    (its 'extra', e.g. a tracking run id). A NaN loss is a CSRAError; the last good state stays."""
    device = device if device is not None else resolve_device(cfg.device, ctx.local_rank)
    hooks = hooks or TrainHooks()
    init_distributed(ctx, device.type)
    try:
        t = build_training(cfg, data, device, ctx, initial_weights=resume is None)
        start, best = 0, Best(epoch=0, val_mAP=-1.0)
        history: list[EpochRow] = []
        if resume is not None:
            t.load_state_dict(resume)
            start, history, best = resume["epoch"], list(resume["history"]), Best(**resume["best"])
            set_rng_state(resume["rng"])
            if best["epoch"] and not from_main(paths.best.is_file, ctx):  # rank 0's checkpoint: its decision
                if ctx.is_main:
                    log.warning("warning: %s of epoch %d is gone; the best of the remaining epochs will be kept",
                                paths.best, best["epoch"])
                best = Best(epoch=0, val_mAP=-1.0)
        selection = asdict(data.selection) if data.selection else None
        run_fingerprint = fingerprint(cfg, data)
        unreadable: set[int] = set()  # item indices of the training images a loader could not read

        for epoch in range(start, cfg.epochs):
            try:
                stats = train_one_epoch(t, epoch, cfg.epochs, progress)
            except NonFiniteLoss as e:
                kept = f"; the last good state (epoch {epoch}) stays in {paths.state}" if epoch else ""
                raise CSRAError(f"{e}{kept}") from None
            scores, targets = validate(t, data, cfg)
            val_map = 100.0 * mean_average_precision(average_precision(scores, targets, data.label_format))
            if val_map > best["val_mAP"]:
                best = Best(epoch=epoch + 1, val_mAP=val_map)
            row = EpochRow(epoch=epoch + 1, train_loss=stats.loss, lr=stats.lr, images_per_s=stats.images_per_s,
                           val_mAP=val_map, best_epoch=best["epoch"])
            history.append(row)
            if ctx.is_main:
                if met := [i for i in stats.skipped if i not in unreadable]:
                    unreadable.update(met)
                    hooks.on_skipped(epoch + 1, [SkippedImage("train", data.train_items[i]["img_path"], "unreadable")
                                                 for i in met])
                if best["epoch"] == epoch + 1:
                    save_checkpoint(paths.best, t.eval_model, data.classes, params or {}, epoch=epoch + 1,
                                    thresholds=thresholds(cfg, data, scores, targets), val_mAP=val_map,
                                    recipe=cfg.recipe(), selection=selection)
                save_state(paths.state, {"format": STATE_FORMAT, "epoch": epoch + 1, **t.state_dict(),
                                         "history": history, "best": best, "rng": rng_state(),
                                         "world_size": ctx.world_size, "fingerprint": run_fingerprint,
                                         "extra": extra_state or {}})
                hooks.on_epoch(row, list(history))

        result = TrainResult(list(history), best["epoch"], best["val_mAP"], start, paths)
        if ctx.is_main:
            hooks.on_end(result)
            paths.state.unlink(missing_ok=True)
    except BaseException:
        shutdown(ctx, wait=False)
        raise
    shutdown(ctx)
    return result
