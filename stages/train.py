"""`csra train`: params → csra.train.run.train → best.pt, history.csv, metrics.json and the MLflow run (with the
prepared data as its input and the machine's load); one process, or many under torchrun (process 0 records)."""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import typer

from csra.data.datasets import get_dataset
from csra.data.loading import loader_workers
from csra.data.prepared import SkippedImage, TrainData, load_training_data
from csra.distributed import SINGLE, DistContext, from_main, init_distributed
from csra.evaluate.predict import resolve_device
from csra.fileio import disk_errors, replace_dir, write_json, write_text
from csra.model.backbones import initial_weights_file
from csra.settings import LOCAL, UNSEARCHED, roles_of, setting
from csra.train.config import TrainConfig
from csra.train.run import TIMINGS, EpochRow, TrainHooks, TrainPaths, TrainResult
from csra.train.run import train as run_training
from csra.train.state import find_resume
from stages.common import BEST, head_summary, machine
from stages.params import UNTRACKED, StageParams, TrackingParams, TrainingData, load_params, workers_setting
from stages.tracking import runs
from stages.tracking.execution import run_name
from stages.tracking.lineage import prepared_version
from stages.tracking.runs import Recorder
from stages.tracking.store import connect

METRICS_FILE, HISTORY = "metrics.json", "history.csv"
STATE = "train_state.pt"  # not a DVC output: it survives a crash so that the next run resumes from it
PARTIAL = ".partial"  # results/train.partial: an unfinished run's outputs and state, swapped in when it ends
SKIPPED = "skipped_images"  # the run's metric (how many) and artifact (skipped_images.txt: which, why)
RESUME = ("auto", "never")


@dataclass(frozen=True)
class TrainParams(TrainConfig):
    """The recipe and run settings (TrainConfig) plus what only the stage uses; num_workers may be 'auto'."""

    num_workers: int | str = workers_setting(roles_of(TrainConfig, "num_workers"))
    recipe: str = setting(pattern=r".+", help="a recipe name", roles=(UNSEARCHED,))
    out_dir: str = setting(roles=(UNSEARCHED, LOCAL))
    resume: str = setting(choices=RESUME, roles=(UNSEARCHED, LOCAL))

    def config(self, num_workers: int) -> TrainConfig:
        """The library's settings, with num_workers as a number (the user's, or what 'auto' gave)."""
        values = {name: getattr(self, name) for name in TrainConfig.names()}
        return TrainConfig(**{**values, "num_workers": num_workers})


@dataclass(frozen=True)
class Params(StageParams):
    """What train reads of params.yaml: all of data and train (its dvc.yaml params, and what its checkpoint
    records), and where the run is recorded (tracking: no dependency)."""

    data: TrainingData
    train: TrainParams
    tracking: TrackingParams


def dist_context() -> DistContext:
    """This process's rank, world size and local rank from torchrun's environment (one process without it)."""
    env = os.environ
    return DistContext(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def write_history(path: Path, history: list[EpochRow]) -> None:
    """history.csv, one row per epoch (floats rounded to 6 places), which `dvc plots` draws: what describes the
    model (loss, lr, val mAP), not how fast the machine was (TIMINGS)."""
    buffer = io.StringIO()
    columns = [name for name in history[0] if name not in TIMINGS]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in history)
    write_text(path, buffer.getvalue())


def skipped_note(data: TrainData, split: str) -> str:
    """' (N skipped: missing, see skipped_images.txt)' after a split's image count, when the start left some out."""
    count = sum(image.split == split for image in data.skipped)
    return f" ({count} skipped: missing, see {SKIPPED}.txt in the MLflow run)" if count else ""


class Record(TrainHooks):
    """Per epoch: MLflow metrics, history.csv (in the work folder) and one console line (after label); the images
    left out (data.bad_images: skip) as the metric and artifact SKIPPED; at the end metrics.json, the best epoch,
    and which checkpoint the run made (in done, once swapped in; None: one that is not kept, as a search trial's)."""

    def __init__(self, work: Path, done: Path | None, epochs: int, recorder: Recorder, label: str = "",
                 skipped: tuple[SkippedImage, ...] = (), about: str = ""):
        self.work, self.done, self.epochs, self.recorder, self.label = work, done, epochs, recorder, label
        self.about = about  # the run's description of the training (describe), completed with its result at the end
        self.skipped = list(skipped)
        if skipped:
            self.record_skipped(0)

    def record_skipped(self, step: int) -> None:
        """The images left out so far: their count (a metric at this epoch) and the list (an artifact)."""
        self.recorder.metrics({SKIPPED: len(self.skipped)}, step=step)
        self.recorder.text("".join(f"{s.split}\t{s.reason}\t{s.path}\n" for s in self.skipped), f"{SKIPPED}.txt")

    def on_skipped(self, epoch: int, images: list[SkippedImage]) -> None:
        self.skipped += images
        self.record_skipped(epoch)
        typer.echo(f"{self.label}epoch {epoch}: {len(images)} training image(s) unreadable, skipped "
                   f"({len(self.skipped)} skipped in all, see {SKIPPED}.txt in the MLflow run)")

    def on_epoch(self, row: EpochRow, history: list[EpochRow]) -> None:
        self.recorder.metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        write_history(self.work / HISTORY, history)
        typer.echo(f"{self.label}epoch {row['epoch']:>3}/{self.epochs}  loss {row['train_loss']:.4f}  "
                   f"lr {row['lr']:.5f}  val mAP {row['val_mAP']:.2f}  {row['images_per_s']:.0f} img/s")

    def on_end(self, result: TrainResult) -> None:
        final = result.final  # metrics.json holds MLflow's names: train_loss and val_mAP at the last step
        summary = {"epochs": final["epoch"], "best_epoch": result.best_epoch, "best_val_mAP": result.best_val_mAP}
        write_json(self.work / METRICS_FILE, {**summary, "train_loss": final["train_loss"],
                                              "val_mAP": final["val_mAP"]}, indent=2)
        self.recorder.metrics({**summary, SKIPPED: len(self.skipped)}, step=final["epoch"])
        self.recorder.tag("best_epoch", str(result.best_epoch))
        self.recorder.describe("train", f"{self.about}: best val mAP {result.best_val_mAP:.2f} at epoch "
                                        f"{result.best_epoch} of {final['epoch']}")
        if self.done is not None:
            self.recorder.checkpoint(result.paths.best, self.done / BEST)
        self.recorder.artifact(self.work / HISTORY)


Setup = tuple[TrainConfig, TrainData, torch.device]  # what a training run trains with (setup)


def setup(params: Params, ctx: DistContext, processes: int | None = None) -> Setup:
    """(the library's settings, the training data, the device) of a training run with these params, in process
    ctx; processes: how many training processes share this machine's cores (default: torchrun's count here)."""
    device = resolve_device(params.train.device, ctx.local_rank)
    cores, local = machine()
    cfg = params.train.config(loader_workers(params.train.num_workers, cores, processes or local, device.type))
    data = load_training_data(params.data.dataset, params.data.prepared_dir, params.data.bad_images == "skip",
                              params.data.selection, params.data.val_fraction, params.data.val_seed)
    return cfg, data, device


def recorded(params: Params, cfg: TrainConfig) -> dict[str, object]:
    """What a checkpoint records besides the recipe (which it records once, whole): the params train read, but
    those of the recipe and of UNTRACKED groups."""
    in_recipe = {f"train.{name}" for name in cfg.recipe()}
    return {k: v for k, v in params.flat().items() if k.split(".")[0] not in UNTRACKED and k not in in_recipe}


def describe(recorder: Recorder, params: Params, data: TrainData) -> str:
    """Which images selected the best epoch, the prepared data as the run's training input, and the run's
    description of the training (what model on which data), which it returns."""
    recorder.tag("selection", f"{data.selection.split}: {data.selection.source}")
    recorder.dataset(prepared_version(get_dataset(params.data.dataset), params.data.prepared_dir), "training")
    train = params.train
    head = head_summary(train.head, train.num_heads, train.lam)
    about = (f"{train.model}, {head}, {train.img_size} px, recipe {train.recipe}, on {params.data.dataset} "
             f"({len(data.train_items)} images, best epoch picked on {data.selection.source}: "
             f"{len(data.val_items)} images)")
    recorder.describe("train", about)
    return about


def train_paths(work: Path) -> TrainPaths:
    """Where a training run in the folder work writes its best checkpoint and its resume state."""
    return TrainPaths(work / BEST, work / STATE)


def train_recorded(params: Params, prepared: Setup, work: Path, recorder: Recorder, hooks: Callable[..., Record], *,
                   resume: dict | None = None, ctx: DistContext = SINGLE, progress: bool = False) -> TrainResult:
    """The one training run of `csra train` and of a search trial, in the folder work, recorded in recorder's
    run: its description and training input (describe), then csra's train() on prepared (setup's) with the params
    a checkpoint records and the caller's hooks, made as hooks(work=, epochs=, recorder=, skipped=, about=)."""
    cfg, data, device = prepared
    about = describe(recorder, params, data)
    record = hooks(work=work, epochs=cfg.epochs, recorder=recorder, skipped=data.skipped, about=about)
    return run_training(cfg, data, train_paths(work), device=device, resume=resume, params=recorded(params, cfg),
                        ctx=ctx, progress=progress, hooks=record, extra_state={"run_id": recorder.run_id})


def run(params_file: Path, overrides: dict[str, object], resume: bool) -> None:
    params = load_params(Params, params_file, overrides)
    out, ctx = Path(params.train.out_dir), dist_context()
    work = out.with_name(f"{out.name}{PARTIAL}")  # the run's outputs while it is unfinished, its resume point
    cfg, data, device = prepared = setup(params, ctx)
    paths = train_paths(work)
    # rank 0 alone reads the state (only its machine writes one) and every rank resumes from it, in step
    init_distributed(ctx, device.type)
    mode = "always" if resume else params.train.resume
    state = from_main(partial(find_resume, paths.state, cfg, data, mode, ctx.world_size), ctx)
    if state is not None and not ctx.is_main:
        typer.echo(f"rank {ctx.rank}: resuming after epoch {state['epoch']}", err=True)
    if state is None:  # a fresh run needs its initial weights: missing ones are an error before any output or run
        initial_weights_file(cfg.model, cfg.pretrained)
    if ctx.is_main:  # a store that is away, refuses us or cannot keep files is one line before any output
        connect()
    if ctx.is_main and state is None:  # a stale or killed run's leftovers go
        with disk_errors(work):
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
    if ctx.is_main:
        head = "GAP + linear (the baseline)" if cfg.head == "gap" else f"{cfg.num_heads} head(s), λ={cfg.lam}"
        typer.echo(f"recipe {params.train.recipe}: {cfg.model}, {head}, "
                   f"{cfg.img_size} px: {len(data.train_items)} train images{skipped_note(data, 'train')}, "
                   f"selection on {data.selection.source} ({len(data.val_items)} images"
                   f"{skipped_note(data, 'selection')}), "
                   f"{len(data.classes)} classes, {cfg.epochs} epochs on {device}"
                   + (f" × {ctx.world_size} processes" if ctx.enabled else "")
                   + f", {cfg.num_workers} loader workers{' each' if ctx.enabled else ''}"
                   + (f"; resuming after epoch {state['epoch']}" if state else ""))
    progress = sys.stderr.isatty()
    if not ctx.is_main:
        run_training(cfg, data, paths, device=device, resume=state, params=recorded(params, cfg), ctx=ctx,
                     progress=progress)
        return
    run_id = state["extra"].get("run_id") if state else None
    name = run_name(params.data.dataset, params.train.recipe, params.train.model)
    try:
        with runs.training_run(params.tracking.experiment, params.flat(), name, run_id,
                               params.tracking.system_metrics, sync_wait=params.tracking.sync_wait) as recorder:
            result = train_recorded(params, prepared, work, recorder, partial(Record, done=out), resume=state,
                                    ctx=ctx, progress=progress)
    except KeyboardInterrupt:  # SIGTERM or SIGINT (stages.common): the finished epochs stay for resume: auto
        if paths.state.is_file() and (work / HISTORY).is_file():
            kept = len((work / HISTORY).read_text().splitlines()) - 1  # history.csv: a header, a row per epoch
            typer.echo(f"stopped during epoch {kept + 1}: the state of epoch {kept} stays in {work}; `csra train` "
                       "(train.resume: auto) continues this run from there", err=True)
        raise
    with disk_errors(out):
        replace_dir(work, out)  # the previous complete outputs stay until now
    typer.echo(f"best epoch {result.best_epoch} (val mAP {result.best_val_mAP:.2f}) → {out / BEST}")
