"""`csra score`: a model over a photo collection on Ray Data, to a Parquet dataset — one row per photo, written whole
or not at all, resumed after a kill — recorded as an MLflow run of its own.

The job: the photos' paths (csra.deploy.collection.list_photos), less those an unfinished earlier job with the same
output already wrote, go through Ray Data in a stream: CPU tasks read and decode them (the served model's decoding,
to test-time pixels), actors that load the model once score the pixels (on GPUs where the cluster has them), and this
process writes the rows, a part file at a time, into `<out>.partial/`, which becomes `<out>` when every photo has its
row. Without RAY_ADDRESS a local Ray is started, sized to this machine; with it, the job runs on that cluster
(score_ray.py)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import typer

from csra.deploy.collection import (
    ERROR,
    PATH,
    RESERVED,
    ModelFile,
    list_photos,
    part_files,
    part_name,
    result_table,
    written_paths,
)
from csra.errors import CSRAError
from csra.fileio import atomic_write, disk_errors, file_md5, replace_dir
from csra.settings import setting
from stages.common import ModelSource
from stages.params import Group, StageParams, TrackingParams, TrainOutput, load_params
from stages.score_ray import import_ray, ray_cluster, scored_batches, sizing

log = logging.getLogger("csra.score")
JOB_FILE = "_job.json"  # in the output: what was scored, by what (Parquet readers skip names starting with _)


@dataclass(frozen=True)
class ScoreSettings(Group):
    """What score reads of `evaluate`: the global threshold (classes without a tuned one) and the device."""

    PARTIAL: ClassVar[bool] = True
    threshold: float = setting(min=0, max=1)


@dataclass(frozen=True)
class PixelLimit(Group):
    """What score reads of `export`: the largest photo, in pixels, it decodes (as the served model)."""

    PARTIAL: ClassVar[bool] = True
    max_pixels: int = setting(min=1)


@dataclass(frozen=True)
class Params(StageParams):
    """What score reads of params.yaml (tracking: where the run is recorded)."""

    train: TrainOutput
    evaluate: ScoreSettings
    export: PixelLimit
    tracking: TrackingParams


@dataclass(frozen=True)
class Job:
    """What a score job is, as its output records it (JOB_FILE): a resumed job must be the same one."""

    model: str  # the checkpoint's MD5 or the registered version's models:/NAME/VERSION
    photos: str
    classes: list[str]
    thresholds: list[float]

    def describe(self) -> str:
        return f"model {self.model}, photos {self.photos}"


# --- the model -------------------------------------------------------------------------------------------------
def model_file(source: ModelSource, params: Params, workdir: Path) -> tuple[ModelFile, dict[str, str]]:
    """The model to score with, as bytes for the workers, and its identity for the run ({what: …})."""
    if source.model_uri is not None:
        from stages.tracking import loading

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the summary is the command's output
        program, metadata, found = loading.fetch(source.model_uri, workdir)
        contract = json.loads((program.parent / "contract.json").read_text(encoding="utf-8"))
        model = ModelFile("program", program.read_bytes(), list(contract["classes"]), int(contract["img_size"]),
                          metadata.get("thresholds"), source.model_uri)
        return model, {"csra.model_uri": source.model_uri, "csra.model_version": found["model_uri"],
                       "job.model": found["model_uri"]}
    from csra.model.checkpoints import load_checkpoint_model

    ckpt = source.checkpoint_or(params.train.out_dir)
    net, saved = load_checkpoint_model(ckpt)  # checked here: a bad file is one line before Ray starts
    model = ModelFile("checkpoint", ckpt.read_bytes(), list(saved["classes"]), net.config.img_size,
                      saved.get("thresholds"), str(ckpt))
    return model, {"checkpoint": str(ckpt), "checkpoint.md5": file_md5(ckpt), "job.model": f"md5:{file_md5(ckpt)}"}


def label_thresholds(model: ModelFile, global_threshold: float, given: float | None) -> list[float]:
    """A threshold per class: the one given for every class; else the model's tuned ones, where it stores them
    (a class without one takes evaluate.threshold), else evaluate.threshold."""
    if given is not None:
        return [given] * len(model.classes)
    tuned = model.thresholds or [None] * len(model.classes)
    return [global_threshold if t is None else float(t) for t in tuned]


# --- the output ------------------------------------------------------------------------------------------------
def staging(out: Path, job: Job) -> tuple[Path, set[str]]:
    """(`<out>.partial/`, the paths its part files already hold): an unfinished earlier run of the same job is
    continued; one of another job is a CSRAError (its rows would mix two models or inputs)."""
    partial = out.with_name(out.name + ".partial")
    record = partial / JOB_FILE
    if partial.is_dir() and record.is_file():
        earlier = json.loads(record.read_text(encoding="utf-8"))
        if earlier != job.__dict__:
            old = Job(**earlier) if set(earlier) == set(job.__dict__) else None
            raise CSRAError(f"{partial}: the unfinished output of another job ({old.describe() if old else earlier}"
                            f"), not of {job.describe()}; run that job again to finish it, or remove the folder")
        for stray in partial.glob(".*.tmp"):  # a part file a killed writer had not finished
            stray.unlink()
        return partial, set(written_paths(partial))
    with disk_errors(out):
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        probe = partial / ".probe"  # an output that cannot be written is one line now, not after the scoring
        probe.write_bytes(b"")
        probe.unlink()
        atomic_write(record, lambda tmp: tmp.write_text(json.dumps(job.__dict__, indent=2), encoding="utf-8"))
    return partial, set()


@dataclass
class Timing:
    """When Ray was ready, and when the scored batches came back: the warm-up (the actors loading the model, the
    first photos decoded) and the rate after it."""

    ready: float = 0.0
    first: float | None = None
    first_rows: int = 0
    last: float = 0.0
    rows: int = 0

    def batch(self, rows: int) -> None:
        self.last = time.monotonic()
        if self.first is None:
            self.first, self.first_rows = self.last, rows
        self.rows += rows

    def warm_up(self) -> float:
        return self.first - self.ready if self.first is not None else 0.0

    def steady(self) -> float:
        """Photos per second after the first batch (0 when there was one batch only)."""
        span = self.last - self.first if self.first is not None else 0.0
        return (self.rows - self.first_rows) / span if span > 0 else 0.0


class PartWriter:
    """Rows gathered into part files of rows_per_file rows, each written under a temporary name and renamed."""

    def __init__(self, folder: Path, classes: list[str], thresholds: list[float], rows_per_file: int):
        self.folder, self.classes, self.thresholds, self.rows_per_file = folder, classes, thresholds, rows_per_file
        numbers = [int(p.stem.split("-")[1]) for p in part_files(folder)]
        self.next = max(numbers, default=-1) + 1
        self.pending: list[dict[str, np.ndarray]] = []
        self.rows = 0

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Take a scored batch; write the part files it completes."""
        self.pending.append(batch)
        while sum(len(b[PATH]) for b in self.pending) >= self.rows_per_file:
            self.flush(self.rows_per_file)

    def flush(self, rows: int | None = None) -> None:
        """Write a part file of the first rows pending (all of them: None)."""
        if not self.pending:
            return
        import pyarrow.parquet as pq

        paths = [str(p) for b in self.pending for p in b[PATH]]
        errors = [str(e) for b in self.pending for e in b[ERROR]]
        scores = np.concatenate([b["scores"] for b in self.pending]).reshape(len(paths), len(self.classes))
        n = len(paths) if rows is None else rows
        table = result_table(paths[:n], errors[:n], scores[:n], self.classes, self.thresholds)
        atomic_write(self.folder / part_name(self.next), lambda tmp: pq.write_table(table, tmp))
        self.next += 1
        self.rows += n
        rest = {PATH: np.array(paths[n:], dtype=object), ERROR: np.array(errors[n:], dtype=object),
                "scores": scores[n:]}
        self.pending = [rest] if n < len(paths) else []


def output_path(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise CSRAError(f"{out}: a file; the output is a folder of Parquet files (a new or earlier output's name)")
    return out


# --- the command -----------------------------------------------------------------------------------------------
def run(params_file: Path, photos: str, out: Path, source: ModelSource, threshold: float | None,
        batch_size: int, actors: int | None, rows_per_file: int) -> None:
    params = load_params(Params, params_file)
    ray = import_ray()  # before any work: without Ray Data nothing runs
    out = output_path(out)
    paths = list_photos(photos)
    with tempfile.TemporaryDirectory(prefix="csra-score-") as workdir:
        model, identity = model_file(source, params, Path(workdir))
    if set(model.classes) & set(RESERVED):
        raise CSRAError(f"{model.name}: a class named {', '.join(sorted(set(model.classes) & set(RESERVED)))}, "
                        f"which the output's own columns ({', '.join(RESERVED)}) already name")
    limits = label_thresholds(model, params.evaluate.threshold, threshold)
    job = Job(identity.pop("job.model"), photos, model.classes, limits)
    partial, done = staging(out, job)
    todo = [p for p in paths if p not in done]
    writer = PartWriter(partial, model.classes, limits, rows_per_file)
    from stages.tracking.scoring import score_run

    with score_run(params.tracking.experiment, model.name, identity) as recorder:
        recorder.params({"photos": photos, "photos.count": len(paths), "out": str(out.resolve()),
                         "batch_size": batch_size, "resumed.rows": len(done)})
        began = time.monotonic()
        seconds, where, size, timing = 0.0, "no Ray: every photo was already scored", None, Timing()
        if todo:
            with ray_cluster(ray) as where:
                timing.ready = time.monotonic()
                size = sizing(ray.cluster_resources(), actors, batch_size)
                for batch in scored_batches(ray, todo, model, size, params.export.max_pixels):
                    timing.batch(len(batch[PATH]))
                    writer.add(batch)
                writer.flush()
                seconds = time.monotonic() - timing.ready
        if writer.rows != len(todo):
            raise CSRAError(f"Ray returned {writer.rows} rows for {len(todo)} photos; the rows written stay in "
                            f"{partial} for a re-run")
        errors = count_errors(partial)
        with disk_errors(out):
            replace_dir(partial, out)
        rate = len(todo) / seconds if seconds > 0 else 0.0
        recorder.metrics({"photos_per_s": rate, "photos_per_s.after_warm_up": timing.steady(), "errors": errors,
                          "photos_scored": len(todo), "ray_start_s": timing.ready - began if todo else 0.0,
                          "warm_up_s": timing.warm_up()})
        recorder.tag("csra.output", str(out.resolve()))
        recorder.describe("score", f"{len(paths)} photos of {photos} by {model.name} into {out}, {errors} unreadable")
    if size is None:
        typer.echo(f"scored 0 photos: {where}")
    else:
        typer.echo(f"scored {len(todo)} photos in {seconds:.1f} s ({rate:.1f} photos/s; {timing.steady():.1f} "
                   f"photos/s after the first batch, {timing.warm_up():.1f} s in) on {where}, {size.actors} model "
                   f"actor{'s' if size.actors > 1 else ''}, batches of {size.batch_size}; Ray's start-up "
                   f"{timing.ready - began:.1f} s apart")
    if done:
        typer.echo(f"resumed: {len(done)} photos were already scored in {partial.name}/ and kept")
    typer.echo(f"errors: {errors} photos unreadable (their rows have an error and no scores)" if errors
               else "errors: none")
    typer.echo(f"{out}: {len(paths)} rows (path, {len(model.classes)} class scores, labels, error) in "
               f"{len(part_files(out))} Parquet files")


def count_errors(folder: Path) -> int:
    """The rows with an error in the part files of folder."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    return sum(int(pc.sum(pc.is_valid(pq.read_table(p, columns=[ERROR]).column(ERROR))).as_py() or 0)
               for p in part_files(folder))
