"""`csra demo`: a folder of images → the official prediction line per image, predictions.json and the class
attention heatmaps (of a checkpoint; a registered model gives scores only), logged to the pipeline's MLflow run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

import typer

from csra.data.loading import list_images
from csra.data.prepared import digest_images
from csra.deploy.heatmaps import write_heatmaps
from csra.deploy.scoring import class_thresholds, demo_line, predict_files, predicted_labels
from csra.errors import CSRAError
from csra.evaluate.predict import resolve_device
from csra.fileio import atomic_dir, write_json, write_text
from csra.settings import DEVICE_PATTERN, setting
from stages.common import ModelSource
from stages.inference import load_for_inference, stage_run_name
from stages.params import DatasetParams, Group, StageParams, TrackingParams, TrainOutput, load_params
from stages.tracking import loading, runs

log = logging.getLogger("csra.demo")
PREDICTIONS_JSON, PREDICTIONS_TXT, HEATMAPS = "predictions.json", "predictions.txt", "heatmaps"
THRESHOLDS = ("global", "per_class")
DIGEST_IMAGES = 8  # the images a split digest gives the demo (the default, data/prepared/test.md5): the first, by path
HeatmapWriter = Callable[[list[tuple[Path, list[float], list[str]]], list[str], Path], list[Path]]


@dataclass(frozen=True)
class DemoParams(Group):
    images: str = setting()
    out_dir: str = setting()
    thresholds: str = setting(choices=THRESHOLDS)


@dataclass(frozen=True)
class ScoringSettings(Group):
    """What demo reads of `evaluate`: the global threshold and how to run the model."""

    PARTIAL: ClassVar[bool] = True
    threshold: float = setting(min=0, max=1)
    batch_size: int = setting(min=1)
    device: str = setting(pattern=DEVICE_PATTERN, help="auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class Params(StageParams):
    """What demo reads of params.yaml (tracking: where the run is recorded, no dependency)."""

    data: DatasetParams
    train: TrainOutput
    evaluate: ScoringSettings
    demo: DemoParams
    tracking: TrackingParams


@dataclass(frozen=True)
class Scored:
    """A model's answer on the demo images: its classes, the per-class thresholds it stores (if any), the scores
    of each readable image, and the heatmap writer (a checkpoint's; None for a registered model)."""

    classes: list[str]
    tuned: list[float | None] | None
    results: list[tuple[Path, list[float]]]
    heatmaps: HeatmapWriter | None
    saved: dict | None = None  # the checkpoint's fields


def demo_images(setting: str) -> list[Path]:
    """The images demo.images names: a folder's JPEG/PNG images, or the first DIGEST_IMAGES images a prepared split's
    digest lists (`<prepared_dir>/test.md5`, the default, there for every dataset). Checked before any work: a
    missing folder or digest is one line naming the setting."""
    try:
        if setting.endswith(".md5"):
            return digest_images(setting, DIGEST_IMAGES)
        return list_images(setting)
    except CSRAError as e:
        raise CSRAError(f"demo.images: {e}") from None


def checkpoint_scores(ckpt: Path, source: ModelSource, params: Params) -> Scored:
    """The scores of each image of demo.images by a checkpoint, through the one prediction path; the classes are
    checked when the user names the dataset."""
    net, saved = load_for_inference(ckpt, source, params.data, source.dataset_given)
    images = demo_images(params.demo.images)
    results = predict_files(net, images, resolve_device(params.evaluate.device), params.evaluate.batch_size)
    return Scored(saved["classes"], saved.get("thresholds"), results, partial(write_heatmaps, net), saved)


def registered_scores(uri: str, images: str) -> Scored:
    """The scores of each image of demo.images (images) by a registered model, loaded and sent the files' bytes as
    `mlflow models serve` serves it; a file it refuses is reported (a warning) and left out."""
    paths, results = demo_images(images), []
    model, metadata = loading.load_served(uri)
    for path in paths:
        try:
            results.append((path, loading.score_photo(model, path.read_bytes())))
        except (OSError, loading.PhotoRefused) as e:
            log.warning("warning: %s: %s; skipped", path, str(e).split("Error: ")[-1])
    if not results:
        raise CSRAError(f"{images}: none of the {len(paths)} images could be scored by {uri}")
    return Scored(metadata["output"]["classes"], metadata.get("thresholds"), results, None)


def run(params_file: Path, overrides: dict[str, object], source: ModelSource) -> None:
    params = load_params(Params, params_file, overrides)
    ckpt = None if source.model_uri is not None else source.checkpoint_or(params.train.out_dir)
    scored = (checkpoint_scores(ckpt, source, params) if ckpt is not None
              else registered_scores(str(source.model_uri), params.demo.images))
    classes = scored.classes
    per_class = class_thresholds(len(classes), params.evaluate.threshold, scored.tuned,
                                 params.demo.thresholds == "per_class", source.model_uri or str(ckpt))
    lines = [demo_line(path, scores, classes, per_class) for path, scores in scored.results]
    predictions = [{"image": str(path), "labels": predicted_labels(scores, classes, per_class),
                    "scores": dict(zip(classes, scores))} for path, scores in scored.results]
    labelled = [(path, scores, item["labels"]) for (path, scores), item in zip(scored.results, predictions)]
    with atomic_dir(Path(params.demo.out_dir)) as tmp:  # all outputs or none; the previous ones stay till then
        write_text(tmp / PREDICTIONS_TXT, "".join(f"{line}\n" for line in lines))
        write_json(tmp / PREDICTIONS_JSON, predictions, indent=2)
        sheets = scored.heatmaps(labelled, classes, tmp / HEATMAPS) if scored.heatmaps else []
        with runs.stage_run(ckpt, params.tracking.experiment, params.flat(), stage_run_name(scored.saved, "demo"),
                                scored.saved) as recorder:
            if source.model_uri is not None:
                recorder.tag("csra.model_uri", source.model_uri)
            recorder.artifacts(tmp, "demo")
            where = "of" if params.demo.images.endswith(".md5") else "in"  # a split's digest, or a folder
            recorder.describe("demo", f"predictions{' and heatmaps' if scored.heatmaps else ''} for "
                                      f"{len(scored.results)} images {where} {params.demo.images}, model "
                                      f"{source.model_uri or ckpt}")
    typer.echo("\n".join(lines))
    typer.echo(f"heatmaps: {len(sheets)} contact sheets and one map per predicted class in "
               f"{Path(params.demo.out_dir) / HEATMAPS}" if scored.heatmaps else
               f"heatmaps: none: {source.model_uri} is the served model (photos in, scores out); the score maps "
               "need the model itself (--checkpoint)")
