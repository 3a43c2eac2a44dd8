"""train(cfg, data, paths) -> TrainResult: one training run owned whole — the model and its initial weights, the
epochs, the best epoch's checkpoint with per-class thresholds, the resumable state and its removal at the end.
The caller records what it wants through callbacks; nothing here knows of MLflow, params files or the CLI."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from csra.data.prepared import TrainData
from csra.distributed import SINGLE, DistContext, init_distributed, shutdown
from csra.errors import CSRAError
from csra.evaluate.metrics import tune_thresholds
from csra.evaluate.predict import resolve_device
from csra.model.checkpoints import save_checkpoint
from csra.model.network import CSRAModel, ModelConfig, build_model
from csra.train.config import TrainConfig
from csra.train.loop import NonFiniteLoss, Trainer
from csra.train.state import fingerprint, save_state, seed_everything

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainPaths:
    """Where a run writes: the best epoch's checkpoint (the one checkpoint a run keeps) and the state that lives
    only while the run is unfinished (the last epoch's weights among it)."""

    best: Path
    state: Path


@dataclass(frozen=True)
class TrainResult:
    """A finished run: one history row per epoch ({epoch, train_loss, lr, images_per_s, val_mAP, best_epoch}), the
    best epoch and its validation mAP, and the epoch it resumed after (0 for a fresh run)."""

    history: list[dict]
    best_epoch: int
    best_val_mAP: float
    resumed_from: int
    paths: TrainPaths

    @property
    def final(self) -> dict:
        return self.history[-1]


class TrainCallbacks:
    """Hooks the caller overrides to record a run (main process only). on_epoch: after each epoch, once its
    checkpoint and state are written. on_end: after the last epoch, before the state file is removed — if it
    raises, the state stays and the run can be resumed."""

    def on_epoch(self, row: dict, history: list[dict]) -> None:
        """Called with the epoch's history row and the whole history so far."""

    def on_end(self, result: TrainResult) -> None:
        """Called once with the finished run."""


@dataclass
class _Run:
    cfg: TrainConfig
    data: TrainData
    paths: TrainPaths
    metadata: dict[str, Any]
    extra_state: dict[str, Any]

    def thresholds(self, val: tuple[np.ndarray, np.ndarray]) -> list[float | None] | None:
        if not self.cfg.tune_thresholds:
            return None
        return [None if math.isnan(t) else float(t) for t in tune_thresholds(*val, self.data.label_format)]

    def save(self, path: Path, model: CSRAModel, epoch: int, val_map: float, val: tuple) -> None:
        selection = asdict(self.data.selection) if self.data.selection else None
        save_checkpoint(path, model, self.data.classes, self.metadata, epoch=epoch, thresholds=self.thresholds(val),
                        val_mAP=val_map, recipe=self.cfg.recipe(), selection=selection)

    def after_epoch(self, row: dict, trainer: Trainer, val: tuple[np.ndarray, np.ndarray]) -> None:
        if trainer.best["epoch"] == trainer.epoch:
            self.save(self.paths.best, trainer.eval_model, trainer.epoch, trainer.best["val_mAP"], val)
        save_state(self.paths.state, {**trainer.state_dict(), "fingerprint": fingerprint(self.cfg, self.data),
                                      "extra": self.extra_state})


def build_trainer(cfg: TrainConfig, data: TrainData, resume: dict | None, ctx: DistContext,
                  progress: bool) -> Trainer:
    """Every RNG seeded from cfg.seed, the model with its initial weights (none when resuming), then the Trainer."""
    seed_everything(cfg.seed)
    config = ModelConfig.create(cfg.model, len(data.classes), cfg.num_heads, cfg.lam, cfg.img_size, cfg.head)
    model = build_model(config, "none" if resume else cfg.pretrained)
    seed_everything(cfg.seed)
    return Trainer(model, data, cfg, ctx, progress)


def train(cfg: TrainConfig, data: TrainData, paths: TrainPaths, *, resume: dict | None = None,
          callbacks: TrainCallbacks | None = None, metadata: dict[str, Any] | None = None,
          extra_state: dict[str, Any] | None = None, ctx: DistContext = SINGLE,
          progress: bool = False) -> TrainResult:
    """Train CSRA on data, validating after every epoch; process 0 writes paths.best whenever the validation mAP
    improves and paths.state after every epoch. resume is a state from
    csra.train.state.find_resume; metadata travels in every checkpoint (under 'params'), extra_state in the saved
    state (its 'extra', e.g. a tracking run id). A NaN loss is a CSRAError; the last good state stays."""
    callbacks = callbacks or TrainCallbacks()
    run = _Run(cfg, data, paths, metadata or {}, extra_state or {})
    init_distributed(ctx, resolve_device(cfg.device, ctx.local_rank).type)
    try:
        trainer = build_trainer(cfg, data, resume, ctx, progress)
        if resume is not None:
            trainer.load_state_dict(resume)
            if not paths.best.is_file() and trainer.best["epoch"]:
                if ctx.is_main:
                    log.warning("warning: %s of epoch %d is gone; the best of the remaining epochs will be kept",
                                paths.best, trainer.best["epoch"])
                trainer.best = {"epoch": 0, "val_mAP": -1.0}
        resumed_from = trainer.epoch

        def after_epoch(row: dict, trainer: Trainer, val: tuple[np.ndarray, np.ndarray]) -> None:
            run.after_epoch(row, trainer, val)
            callbacks.on_epoch(row, list(trainer.history))

        try:
            trainer.fit(after_epoch)
        except NonFiniteLoss as e:
            kept = f"; the last good state (epoch {trainer.epoch}) stays in {paths.state}" if trainer.epoch else ""
            raise CSRAError(f"{e}{kept}") from None
        result = TrainResult(list(trainer.history), trainer.best["epoch"], trainer.best["val_mAP"], resumed_from,
                             paths)
        if ctx.is_main:
            callbacks.on_end(result)
            paths.state.unlink(missing_ok=True)
        return result
    finally:
        shutdown(ctx)
