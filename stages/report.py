"""The evaluation report: metrics.json, per_class.csv and plots/ of scores on an annotation file, and what evaluate
reads of params.yaml. An official scores file gets the report alone (`csra evaluate --scores`, no torch; plots/ on
request), also outside a project with the defaults; a model's scores come through stages/evaluate.py, which also
records them in MLflow."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import typer

from csra.data.datasets import DatasetEntry, get_dataset, resolve_classes
from csra.data.formats import CLASSES_FILE, image_stem, read_annotations, read_scores
from csra.errors import CSRAError
from csra.evaluate.metrics import evaluate_scores, per_class_table, rank
from csra.evaluate.reports import plot_ap_bars, plot_pr_curves
from csra.fileio import atomic_dir, write_json, write_text
from csra.settings import DEVICE_PATTERN, from_mapping, setting
from stages.common import DEFAULT_PARAMS_PATH
from stages.params import (
    DatasetParams,
    Group,
    StageParams,
    TrackingParams,
    TrainOutput,
    load_params,
    same_as,
    workers_setting,
)

METRICS_FILE, SCORES, PER_CLASS = "metrics.json", "scores.json", "per_class.csv"
PLOTS, PR_CURVES, AP_BARS = "plots", "pr_curves.png", "ap_per_class.png"


@dataclass(frozen=True)
class EvaluateParams(Group):
    out_dir: str = setting()
    threshold: float = setting(min=0, max=1)
    batch_size: int = setting(min=1)
    num_workers: int | str = workers_setting()
    device: str = setting(pattern=DEVICE_PATTERN, help="auto, cpu, cuda or cuda:N")
    deterministic: bool = setting()


@dataclass(frozen=True)
class Params(StageParams):
    """What evaluate reads of params.yaml: the dataset, where train wrote best.pt, its own group, and where runs
    are recorded (tracking: no dependency)."""

    data: DatasetParams
    train: TrainOutput
    evaluate: EvaluateParams
    tracking: TrackingParams


@dataclass(frozen=True)
class ReportSettings(Group):
    """What a scores file's report reads of `evaluate`: where it goes and the threshold."""

    PARTIAL: ClassVar[bool] = True
    OF: ClassVar[type | None] = EvaluateParams
    out_dir: str = same_as(EvaluateParams, "out_dir")
    threshold: float = same_as(EvaluateParams, "threshold")


@dataclass(frozen=True)
class ScoresParams(StageParams):
    """What `csra evaluate --scores` reads of params.yaml: the dataset (label codes, classes, test file) and the
    report's settings."""

    data: DatasetParams
    evaluate: ReportSettings


# Outside a project (no params.yaml in the working folder, no --params) a scores file is scored with these:
# conf/config.yaml's values of ScoresParams' keys (tests/stages/test_evaluate.py checks that they are the same).
DEFAULTS = {"data.dataset": "synthetic", "data.prepared_dir": "data/prepared", "evaluate.out_dir": "results/evaluate",
            "evaluate.threshold": 0.5}


def per_class_csv(classes: list[str], aps: np.ndarray, table: dict[str, np.ndarray]) -> str:
    """One row per class: AP, precision, recall, F1 (percent, empty where undefined) and support."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["class", "AP", "precision", "recall", "F1", "support"])
    columns = [aps, table["precision"], table["recall"], table["F1"]]
    for i, name in enumerate(classes):
        cells = ["" if math.isnan(col[i]) else f"{100 * col[i]:.4f}" for col in columns]
        writer.writerow([name, *cells, int(table["support"][i])])
    return buffer.getvalue()


def summary(metrics: dict[str, float], classes: list[str], aps: np.ndarray, ann: Path) -> list[str]:
    """The console report: the metrics, their top-3 forms, classes left out, and the three lowest APs."""
    lines = ["  ".join(f"{k} {v:.2f}" for k, v in metrics.items() if not k.endswith("_top3")),
             "top-3: " + "  ".join(f"{k[:-5]} {v:.2f}" for k, v in metrics.items() if k.endswith("_top3"))]
    missing = [c for c, ap in zip(classes, aps) if math.isnan(ap)]
    if missing:
        lines.append(f"warning: no positive in {ann} for {', '.join(missing)}: left out of the class means")
    order = [i for i in np.argsort(aps) if not math.isnan(aps[i])][:3]
    lines.append("lowest AP: " + ", ".join(f"{classes[i]} {100 * aps[i]:.2f}" for i in order))
    return lines


def write_report(folder: Path, values: np.ndarray, items: list[dict], classes: list[str], label_format: str,
                 threshold: float, with_scores: bool, plots: bool) -> tuple[dict[str, float], np.ndarray]:
    """metrics.json, per_class.csv (and scores.json, plots/) in folder; returns (metrics, AP per class). The AP
    and the precision-recall curves are read from one ranking of each class."""
    targets = np.array([item["target"] for item in items])
    ranking = rank(values, targets, label_format)
    metrics, aps = evaluate_scores(values, targets, label_format, threshold, ranking)
    if with_scores:
        write_json(folder / SCORES, [{"file_name": image_stem(it["img_path"]), "scores": s}
                                     for it, s in zip(items, values.tolist())])
    write_text(folder / PER_CLASS, per_class_csv(classes, aps, per_class_table(values, targets, label_format,
                                                                             threshold)))
    if plots:
        plot_pr_curves(ranking.curves(), classes, aps, folder / PLOTS / PR_CURVES)
        plot_ap_bars(classes, aps, folder / PLOTS / AP_BARS)
    write_json(folder / METRICS_FILE, metrics, indent=2)
    return metrics, aps


def read_items(ann: Path, entry: DatasetEntry, classes: list[str], owner: str) -> list[dict]:
    """The annotation file's items, whose targets must have one entry per class of owner."""
    items = read_annotations(ann, label_format=entry.label_format)
    if len(items[0]["target"]) != len(classes):
        raise CSRAError(f"{ann}: {len(items[0]['target'])} classes per target, but {owner} has {len(classes)}")
    return items


def scores_params(params_file: Path | None, overrides: dict[str, object]) -> tuple[ScoresParams, list[str]]:
    """(ScoresParams, the DEFAULTS keys used): read from params_file (default params.yaml) when one was named or
    the working folder has params.yaml (no defaults used); else the DEFAULTS under the overrides."""
    if params_file is not None or DEFAULT_PARAMS_PATH.is_file():
        return load_params(ScoresParams, params_file or DEFAULT_PARAMS_PATH, overrides), []
    nested: dict[str, dict[str, object]] = {}
    for key, default in DEFAULTS.items():
        group, name = key.split(".")
        nested.setdefault(group, {})[name] = default if overrides.get(key) is None else overrides[key]
    return from_mapping(ScoresParams, nested, "the defaults"), [key for key in DEFAULTS if overrides.get(key) is None]


def run_scores_file(params_file: Path | None, overrides: dict[str, object], scores: Path, annotations: Path | None,
                    plots: bool) -> None:
    """The metrics of an official scores file on the annotation file (default: the prepared test file): the
    report alone, with no model to record in MLflow; plots/ only when asked for."""
    params, defaults = scores_params(params_file, overrides)
    prepared = Path(params.data.prepared_dir)
    if annotations is not None and not (prepared / CLASSES_FILE).is_file():  # the prepared folder is not read
        defaults = [key for key in defaults if key != "data.prepared_dir"]
    if defaults:
        typer.echo(f"note: no {DEFAULT_PARAMS_PATH} here: using the defaults "
                   + ", ".join(f"{key} {DEFAULTS[key]}" for key in defaults))
    entry = get_dataset(params.data.dataset)
    ann = annotations or prepared / entry.test_file
    classes = resolve_classes(entry, prepared)
    items = read_items(ann, entry, classes, f"dataset {entry.name}")
    values = read_scores(scores, items, len(classes))
    with atomic_dir(Path(params.evaluate.out_dir)) as tmp:
        metrics, aps = write_report(tmp, values, items, classes, entry.label_format, params.evaluate.threshold,
                                    with_scores=False, plots=plots)
    lines = summary(metrics, classes, aps, ann) + ["(the metrics of a scores file are not logged to MLflow)"]
    typer.echo("\n".join(lines))
