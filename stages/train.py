"""`csra train`: CSRA on the prepared annotations — final and best checkpoints, per-epoch history, the MLflow run,
a resumable state after every epoch; one process or many under torchrun."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer

from csra.checkpoints import save_checkpoint
from csra.data.annotations import CLASSES_FILE, read_annotations, read_classes
from csra.data.check import Findings, check_items
from csra.data.classes import DATASET_CLASSES
from csra.data.sources import get_source
from csra.distributed import DistContext, init_distributed, shutdown
from csra.engine import TrainConfig, resolve_device, seed_everything
from csra.errors import CSRAError
from csra.fileio import atomic_write, load_weights_only, write_json, write_text
from csra.metrics import tune_thresholds
from csra.model import ModelConfig, build_model
from csra.trainer import STATE_FORMAT, NonFiniteLoss, Trainer, start_trainer
from stages import tracking
from stages.common import DEFAULT_PARAMS_PATH, ParamsOption, user_errors
from stages.params import Params, config_from

CHECKPOINT, BEST, RUN_FILE, METRICS, HISTORY = "model.pt", "best.pt", "run.json", "metrics.json", "history.csv"
BAD_IMAGES = ("skip", "fail")  # data.bad_images: an unreadable or missing image is left out, or ends the run
STATE = "train_state.pt"  # not a DVC output: it survives a crash so that the next run resumes from it
LOGGED_GROUPS = ["data", "prepare", "train", "tracking"]
# Settings that may change between an interrupted run and its resume (they do not change its trajectory).
RESUMABLE_CHANGES = {"train.epochs", "train.num_workers", "train.device", "train.resume", "train.out_dir",
                     "train.compile", "tracking.experiment"}


def write_history(path: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in history)
    write_text(path, buffer.getvalue())


def usable_items(prepared: Path, files: dict[str, list[dict]], classes: list[str], skip: bool) -> list[list[dict]]:
    """The cheap check on start (class counts, image files present): missing images end the run, or with skip
    are reported and their items left out."""
    found = Findings()
    for name, items in files.items():
        found.extend(check_items(prepared / name, items, classes, decode=False))
    for warning in found.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if found.errors and not skip:
        raise CSRAError("; ".join(found.errors) + " (data.bad_images: skip leaves them out)")
    for error in found.errors:
        typer.echo(f"warning: {error}; skipped (data.bad_images: skip)", err=True)
    return [[item for item in items if item["img_path"] not in found.bad_paths] for items in files.values()]


def dist_context() -> DistContext:
    """This process's rank, world size and local rank from torchrun's environment (one process without it)."""
    env = os.environ
    return DistContext(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def fingerprint(flat: dict[str, Any]) -> str:
    kept = {k: v for k, v in sorted(flat.items()) if k not in RESUMABLE_CHANGES}
    return hashlib.sha256(json.dumps(kept, default=str).encode()).hexdigest()


def resume_state(path: Path, flat: dict[str, Any], mode: str, ctx: DistContext) -> dict | None:
    """The saved state to continue from, or None to start afresh. mode: 'always' (--resume: a state must exist
    and match), 'auto' (use a matching state, ignore a stale one with a warning) or 'never'."""
    if mode not in ("auto", "never", "always"):
        raise CSRAError(f"train.resume must be auto or never, got {mode!r}")
    if mode == "never" or (not path.is_file() and mode == "auto"):
        return None
    if not path.is_file():
        raise CSRAError(f"{path}: no interrupted run to resume")
    state = load_weights_only(path, "training state")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CSRAError(f"{path}: not a CSRA training state (no format {STATE_FORMAT!r})")
    stale = state["fingerprint"] != fingerprint(flat) or state["world_size"] != ctx.world_size
    if stale and mode == "always":
        raise CSRAError(f"{path}: saved with other settings or another number of processes "
                        f"({state['world_size']}); it cannot be resumed with these")
    if stale:
        if ctx.is_main:
            typer.echo(f"warning: {path} was saved with other settings; starting afresh", err=True)
        return None
    return state


def save_best(out: Path, trainer: Trainer, classes: list[str], flat: dict, val: tuple, tune: bool,
              label_format: str) -> None:
    thresholds = None
    if tune:
        thresholds = [None if math.isnan(t) else float(t) for t in tune_thresholds(*val, label_format)]
    save_checkpoint(out / BEST, trainer.eval_model, classes, flat, epoch=trainer.epoch, thresholds=thresholds,
                    val_mAP=trainer.best["val_mAP"])


@user_errors
def train(
    model: Annotated[str | None, typer.Option(help="Backbone name (train.model).")] = None,
    num_heads: Annotated[int | None, typer.Option(help="CSRA heads: 1, 2, 4, 6 or 8 (train.num_heads).")] = None,
    lam: Annotated[float | None, typer.Option(help="Weight of the attention logit, λ (train.lam).")] = None,
    img_size: Annotated[int | None, typer.Option(help="Square input size (train.img_size).")] = None,
    pretrained: Annotated[str | None, typer.Option(help="Initial backbone weights: imagenet, none or a file "
                                                        "(train.pretrained).")] = None,
    preset: Annotated[str | None, typer.Option(help="Recipe under presets (train.preset).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (train.epochs).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Global batch size (train.batch_size).")] = None,
    lr: Annotated[float | None, typer.Option(help="Backbone learning rate (train.lr).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every RNG (train.seed).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N (train.device).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in out_dir (it must "
                                                          "exist and match the settings).")] = False,
    out_dir: Annotated[Path | None, typer.Option(help="Output folder (train.out_dir).")] = None,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Train CSRA on data.prepared_dir and log the run to MLflow; writes the final and best checkpoints and the
    run id to out_dir. Under torchrun, every process trains its share and process 0 writes and logs."""
    params = Params.load(params_file).override(
        train__model=model, train__num_heads=num_heads, train__lam=lam, train__img_size=img_size,
        train__pretrained=pretrained, train__preset=preset, train__epochs=epochs, train__batch_size=batch_size,
        train__lr=lr, train__seed=seed, train__device=device, train__out_dir=str(out_dir) if out_dir else None,
    )
    recipe = params.apply_preset("train", "presets", auto="data.dataset")
    ctx = dist_context()
    source = get_source(params.get("data.dataset", str))
    cfg = config_from(params, TrainConfig, "train")
    config_args = {k: params.get(f"train.{k}", t) for k, t in (("num_heads", int), ("lam", float), ("img_size", int))}
    out = Path(params.get("train.out_dir", str))
    prepared = Path(params.get("data.prepared_dir", str))
    bad_images = params.get("data.bad_images", str)
    if bad_images not in BAD_IMAGES:
        raise CSRAError(f"{params.source}: data.bad_images must be {' or '.join(BAD_IMAGES)}, got {bad_images!r}")
    classes_file = prepared / CLASSES_FILE
    if classes_file.is_file() or source.name not in DATASET_CLASSES:
        classes = read_classes(classes_file)
    else:  # annotation files made by the official scripts come without a class list
        classes = list(DATASET_CLASSES[source.name])
    train_items = read_annotations(prepared / source.train_file, label_format="binary")
    val_items = read_annotations(prepared / source.test_file, label_format=source.label_format)
    train_items, val_items = usable_items(prepared, {source.train_file: train_items, source.test_file: val_items},
                                          classes, skip=bad_images == "skip")
    config = ModelConfig.create(params.get("train.model", str), len(classes), **config_args)
    flat = params.flat(LOGGED_GROUPS)
    state = resume_state(out / STATE, flat, "always" if resume else params.get("train.resume", str), ctx)
    init_distributed(ctx, resolve_device(cfg.device, ctx.local_rank).type)
    try:
        seed_everything(cfg.seed)  # the initial weights too
        net = build_model(config, "none" if state else params.get("train.pretrained", str))
        trainer = start_trainer(net, train_items, val_items, cfg, source.label_format, ctx, sys.stderr.isatty(),
                                skip_bad=bad_images == "skip")
        if state is not None:
            trainer.load_state_dict(state)
            if not (out / BEST).is_file() and trainer.best["epoch"]:
                if ctx.is_main:
                    typer.echo(f"warning: {out / BEST} of epoch {trainer.best['epoch']} is gone; the best of the "
                               "remaining epochs will be kept", err=True)
                trainer.best = {"epoch": 0, "val_mAP": -1.0}
        if ctx.is_main:
            typer.echo(f"preset {recipe}: {config.backbone}, {config.num_heads} head(s), λ={config.lam}, "
                       f"{config.img_size} px: {len(train_items)} train, {len(val_items)} val images, "
                       f"{len(classes)} classes, {cfg.epochs} epochs on {trainer.device}"
                       + (f" × {ctx.world_size} processes" if ctx.enabled else "")
                       + (f"; resuming after epoch {trainer.epoch}" if state else ""))
        run_and_save(trainer, params, flat, classes, out, source.label_format, state)
    finally:
        shutdown(ctx)


def run_and_save(trainer: Trainer, params: Params, flat: dict, classes: list[str], out: Path, label_format: str,
                 state: dict | None) -> None:
    """fit() with the per-epoch outputs (process 0): MLflow metrics, history.csv, best.pt, the resumable state;
    then model.pt and metrics.json. The state file goes once the run is complete."""
    main, cfg = trainer.ctx.is_main, trainer.cfg
    tune = params.get("train.tune_thresholds", bool)
    experiment = params.get("tracking.experiment", str)
    run = (tracking.start_pipeline_run(experiment, flat, out / RUN_FILE, run_id=state and state["run_id"])
           if main else nullcontext())
    with run as mlflow:
        run_id = mlflow.active_run().info.run_id if main else None
        last_val: list[tuple[np.ndarray, np.ndarray]] = []

        def on_epoch(row: dict, trainer: Trainer, val: tuple[np.ndarray, np.ndarray]) -> None:
            last_val[:] = [val]
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
            write_history(out / HISTORY, trainer.history)
            if trainer.best["epoch"] == trainer.epoch:
                save_best(out, trainer, classes, flat, val, tune, label_format)
            saved = {**trainer.state_dict(), "run_id": run_id, "fingerprint": fingerprint(flat)}
            atomic_write(out / STATE, lambda tmp: torch.save(saved, tmp))
            typer.echo(f"epoch {row['epoch']:>3}/{cfg.epochs}  loss {row['train_loss']:.4f}  lr {row['lr']:.5f}  "
                       f"val mAP {row['val_mAP']:.2f}  {row['images_per_s']:.0f} img/s")

        try:
            trainer.fit(on_epoch)
        except NonFiniteLoss as e:
            kept = f"; the last good state (epoch {trainer.epoch}) stays in {out / STATE}" if trainer.epoch else ""
            raise CSRAError(f"{e}{kept}") from None
        if not main:
            return
        final, best = trainer.history[-1], trainer.best
        thresholds = None
        if tune and last_val:
            thresholds = [None if math.isnan(t) else float(t) for t in tune_thresholds(*last_val[0], label_format)]
        save_checkpoint(out / CHECKPOINT, trainer.eval_model, classes, flat, epoch=final["epoch"],
                        thresholds=thresholds, val_mAP=final["val_mAP"])
        write_json(out / METRICS, {"epochs": final["epoch"], "train_loss": final["train_loss"],
                                   "val_mAP": final["val_mAP"], "best_epoch": best["epoch"],
                                   "best_val_mAP": best["val_mAP"]}, indent=2)
        mlflow.log_metrics({"best_val_mAP": best["val_mAP"]})
        mlflow.set_tag("best_epoch", str(best["epoch"]))
        for name in (CHECKPOINT, BEST):
            mlflow.log_artifact(str(out / name), "checkpoints")
        mlflow.log_artifact(str(out / HISTORY))
    (out / STATE).unlink(missing_ok=True)
    typer.echo(f"best epoch {best['epoch']} (val mAP {best['val_mAP']:.2f}) → {out / BEST}; "
               f"last epoch → {out / CHECKPOINT}")
