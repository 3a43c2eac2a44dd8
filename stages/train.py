"""`csra train`: params → csra.train.run.train → best.pt, history.csv, metrics.json and the MLflow run (with the
prepared data as its input and the machine's load); one process, or many under torchrun (process 0 records)."""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stages.common import BEST, DEFAULT_PARAMS_PATH, ParamsOption, machine, user_errors

if TYPE_CHECKING:
    from csra.train.run import TrainResult
    from stages.tracking import Recorder

METRICS_FILE, HISTORY = "metrics.json", "history.csv"
STATE = "train_state.pt"  # not a DVC output: it survives a crash so that the next run resumes from it
PARTIAL = ".partial"  # results/train.partial: an unfinished run's outputs and state, swapped in when it ends
TIMINGS = ("images_per_s",)  # wall-clock figures: MLflow metrics, never in a DVC-tracked file
# The params that change train's outputs: its params in dvc.yaml, and what the checkpoint records of the params (a
# key outside them, such as where runs are recorded, would make a checkpoint depend on what DVC does not track).
OUTPUT_PARAMS = ("data.dataset", "data.prepared_dir", "data.bad_images", "data.selection", "data.val_fraction",
                 "data.val_seed", "train")


def dist_context():
    """This process's rank, world size and local rank from torchrun's environment (one process without it)."""
    from csra.distributed import DistContext

    env = os.environ
    return DistContext(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def write_history(path: Path, history: list[dict]) -> None:
    """history.csv, one row per epoch (floats rounded to 6 places), which `dvc plots` draws: what describes the
    model (loss, lr, val mAP), not how fast the machine was (TIMINGS)."""
    from csra.fileio import write_text

    buffer = io.StringIO()
    columns = [name for name in history[0] if name not in TIMINGS]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in history)
    write_text(path, buffer.getvalue())


def make_callbacks(out: Path, done: Path, epochs: int, recorder: Recorder):
    """Per epoch: MLflow metrics, history.csv (in the work folder out) and one console line; at the end
    metrics.json, the best epoch, and which checkpoint the run made (in done, once swapped in)."""
    from csra.fileio import write_json
    from csra.train.run import TrainCallbacks

    class Record(TrainCallbacks):
        def on_epoch(self, row: dict, history: list[dict]) -> None:
            recorder.metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
            write_history(out / HISTORY, history)
            typer.echo(f"epoch {row['epoch']:>3}/{epochs}  loss {row['train_loss']:.4f}  lr {row['lr']:.5f}  "
                       f"val mAP {row['val_mAP']:.2f}  {row['images_per_s']:.0f} img/s")

        def on_end(self, result: TrainResult) -> None:
            final = result.final  # metrics.json holds MLflow's names: train_loss and val_mAP at the last step
            summary = {"epochs": final["epoch"], "best_epoch": result.best_epoch, "best_val_mAP": result.best_val_mAP}
            write_json(out / METRICS_FILE, {**summary, "train_loss": final["train_loss"], "val_mAP": final["val_mAP"]},
                       indent=2)
            recorder.metrics(summary, step=final["epoch"])
            recorder.tag("best_epoch", str(result.best_epoch))
            recorder.checkpoint(result.paths.best, done / BEST)
            recorder.artifact(out / HISTORY)

    return Record()


@user_errors
def train(
    model: Annotated[str | None, typer.Option(help="Backbone name (train.model).")] = None,
    num_heads: Annotated[int | None, typer.Option(help="CSRA heads: 1, 2, 4, 6 or 8 (train.num_heads).")] = None,
    lam: Annotated[float | None, typer.Option(help="Weight of the attention logit, λ (train.lam).")] = None,
    img_size: Annotated[int | None, typer.Option(help="Square input size (train.img_size).")] = None,
    pretrained: Annotated[str | None, typer.Option(help="Initial backbone weights: imagenet, none or a file "
                                                        "(train.pretrained).")] = None,
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
    """Train CSRA on data.prepared_dir and record the run in MLflow: the best epoch's checkpoint, the per-epoch
    history and metrics. Under torchrun, every process trains its share and process 0 writes and records."""
    from stages.params import load_params

    params = load_params(
        params_file, train__model=model, train__num_heads=num_heads, train__lam=lam, train__img_size=img_size,
        train__pretrained=pretrained, train__epochs=epochs, train__batch_size=batch_size, train__lr=lr,
        train__seed=seed, train__device=device, train__out_dir=str(out_dir) if out_dir else None,
    )
    from csra.data.datasets import get_dataset
    from csra.data.loading import loader_workers
    from csra.data.prepared import load_training_data
    from csra.evaluate.predict import resolve_device
    from csra.fileio import disk_errors, replace_dir
    from csra.train.run import TrainPaths
    from csra.train.run import train as run_training
    from csra.train.state import find_resume
    from stages import tracking
    from stages.execution import run_name
    from stages.lineage import prepared_version

    out, ctx = Path(params.train.out_dir), dist_context()
    work = out.with_name(f"{out.name}{PARTIAL}")  # the run's outputs while it is unfinished, its resume point
    device = resolve_device(params.train.device, ctx.local_rank)
    cfg = params.train.config(loader_workers(params.train.num_workers, *machine(), device.type))
    data = load_training_data(params.data.dataset, params.data.prepared_dir, params.data.bad_images == "skip",
                              params.data.selection, params.data.val_fraction, params.data.val_seed)
    paths = TrainPaths(work / BEST, work / STATE)
    state = find_resume(paths.state, cfg, data, "always" if resume else params.train.resume, ctx.world_size)
    if ctx.is_main and state is None:  # a stale or killed run's leftovers go
        with disk_errors(work):
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
    if ctx.is_main:
        head = "GAP + linear (the baseline)" if cfg.head == "gap" else f"{cfg.num_heads} head(s), λ={cfg.lam}"
        typer.echo(f"recipe {params.train.recipe}: {cfg.model}, {head}, "
                   f"{cfg.img_size} px: {len(data.train_items)} train images, selection on "
                   f"{data.selection.source} ({len(data.val_items)} images), "
                   f"{len(data.classes)} classes, {cfg.epochs} epochs on {device}"
                   + (f" × {ctx.world_size} processes" if ctx.enabled else "")
                   + f", {cfg.num_workers} loader workers{' each' if ctx.enabled else ''}"
                   + (f"; resuming after epoch {state['epoch']}" if state else ""))
    flat = params.flat()
    recorded = {k: v for k, v in flat.items() if k in OUTPUT_PARAMS or k.split(".")[0] in OUTPUT_PARAMS}
    progress = sys.stderr.isatty()
    if not ctx.is_main:
        run_training(cfg, data, paths, resume=state, metadata=recorded, ctx=ctx, progress=progress)
        return
    run_id = state["extra"].get("run_id") if state else None
    name = run_name(params.train.recipe)
    with tracking.training_run(params.tracking.experiment, flat, name, run_id,
                               params.tracking.system_metrics) as recorder:
        recorder.tag("selection", f"{data.selection.split}: {data.selection.source}")
        recorder.dataset(prepared_version(get_dataset(params.data.dataset), params.data.prepared_dir), "training")
        result = run_training(cfg, data, paths, resume=state, metadata=recorded, ctx=ctx, progress=progress,
                              callbacks=make_callbacks(work, out, cfg.epochs, recorder),
                              extra_state={"run_id": recorder.run_id})
    with disk_errors(out):
        replace_dir(work, out)  # the previous complete outputs stay until now
    typer.echo(f"best epoch {result.best_epoch} (val mAP {result.best_val_mAP:.2f}) → {out / BEST}")
