"""`csra train`: CSRA on the prepared annotations; checkpoint, per-epoch history and the MLflow run."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Annotated

import typer

from csra.checkpoints import save_checkpoint
from csra.data.annotations import CLASSES_FILE, read_annotations, read_classes
from csra.data.check import Findings, check_items
from csra.data.classes import DATASET_CLASSES
from csra.data.sources import get_source
from csra.engine import TrainConfig, fit, seed_everything
from csra.errors import CSRAError
from csra.fileio import write_json, write_text
from csra.metrics import tune_thresholds
from csra.model import ModelConfig, build_model
from stages import tracking
from stages.common import DEFAULT_PARAMS_PATH, ParamsOption, user_errors
from stages.params import Params, config_from

CHECKPOINT, RUN_FILE, METRICS, HISTORY = "model.pt", "run.json", "metrics.json", "history.csv"
BAD_IMAGES = ("skip", "fail")  # data.bad_images: an unreadable or missing image is left out, or ends the run
LOGGED_GROUPS = ["data", "prepare", "train", "tracking"]


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


@user_errors
def train(
    model: Annotated[str | None, typer.Option(help="Backbone name (train.model).")] = None,
    num_heads: Annotated[int | None, typer.Option(help="CSRA heads: 1, 2, 4, 6 or 8 (train.num_heads).")] = None,
    lam: Annotated[float | None, typer.Option(help="Weight of the attention logit, λ (train.lam).")] = None,
    img_size: Annotated[int | None, typer.Option(help="Square input size (train.img_size).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (train.epochs).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (train.batch_size).")] = None,
    lr: Annotated[float | None, typer.Option(help="Backbone learning rate (train.lr).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every RNG (train.seed).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N (train.device).")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Output folder (train.out_dir).")] = None,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Train CSRA on data.prepared_dir and log the run to MLflow; writes the checkpoint and run id to out_dir."""
    params = Params.load(params_file).override(
        train__model=model, train__num_heads=num_heads, train__lam=lam, train__img_size=img_size,
        train__epochs=epochs, train__batch_size=batch_size, train__lr=lr, train__seed=seed, train__device=device,
        train__out_dir=str(out_dir) if out_dir else None,
    )
    source = get_source(params.get("data.dataset", str))
    cfg = config_from(params, TrainConfig, "train")
    model_args = {"backbone": params.get("train.model", str), "num_heads": params.get("train.num_heads", int),
                  "lam": params.get("train.lam", float), "img_size": params.get("train.img_size", int)}
    out = Path(params.get("train.out_dir", str))
    experiment = params.get("tracking.experiment", str)
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
    config = ModelConfig.create(num_classes=len(classes), **model_args)
    seed_everything(cfg.seed)  # the initial weights too
    net = build_model(config)
    flat = params.flat(LOGGED_GROUPS)
    typer.echo(f"{config.backbone}, {config.num_heads} head(s), λ={config.lam}: {len(train_items)} train, "
               f"{len(val_items)} val images, {len(classes)} classes, {cfg.epochs} epochs")
    history: list[dict] = []

    with tracking.start_pipeline_run(experiment, flat, out / RUN_FILE) as mlflow:

        def on_epoch(row: dict) -> None:
            history.append(row)
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
            write_history(out / HISTORY, history)
            typer.echo(f"epoch {row['epoch']:>3}/{cfg.epochs}  loss {row['train_loss']:.4f}  lr {row['lr']:.5f}  "
                       f"val mAP {row['val_mAP']:.2f}  {row['images_per_s']:.0f} img/s")

        _, val_scores = fit(net, train_items, val_items, cfg, source.label_format, on_epoch,
                            skip_bad=bad_images == "skip")
        final = history[-1]
        thresholds = None
        if params.get("train.tune_thresholds", bool):
            tuned = tune_thresholds(*val_scores, source.label_format)
            thresholds = [None if math.isnan(t) else float(t) for t in tuned]
            typer.echo("per-class thresholds (best F1 on the validation split): "
                       + ", ".join(f"{c} {t:.2f}" for c, t in zip(classes, thresholds) if t is not None))
        save_checkpoint(out / CHECKPOINT, net, classes, flat, epoch=final["epoch"], thresholds=thresholds)
        write_json(out / METRICS, {"epochs": final["epoch"], "train_loss": final["train_loss"],
                                   "val_mAP": final["val_mAP"]}, indent=2)
        mlflow.log_artifact(str(out / CHECKPOINT), "checkpoints")
        mlflow.log_artifact(str(out / HISTORY))
    typer.echo(f"checkpoint → {out / CHECKPOINT}")
