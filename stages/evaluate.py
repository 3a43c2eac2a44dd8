"""`csra evaluate`: a checkpoint (or an official scores file) on an annotation file → metrics.json, scores.json,
per_class.csv, and the metrics logged to the pipeline's MLflow run."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from csra.checkpoints import load_model
from csra.data.annotations import CLASSES_FILE, image_stem, read_annotations, read_classes, read_scores
from csra.data.classes import DATASET_CLASSES, LABEL_FORMATS, label_format_of
from csra.data.sources import SOURCES, get_source
from csra.engine import make_loader, predict, resolve_device
from csra.errors import CSRAError
from csra.fileio import write_json, write_text
from csra.metrics import evaluate_scores, per_class_table
from csra.reports import plot_ap_bars, plot_pr_curves
from stages import tracking
from stages.common import DEFAULT_PARAMS_PATH, ParamsOption, user_errors
from stages.params import Params
from stages.train import CHECKPOINT, RUN_FILE

METRICS, SCORES, PER_CLASS = "metrics.json", "scores.json", "per_class.csv"
PLOTS, PR_CURVES, AP_BARS = "plots", "pr_curves.png", "ap_per_class.png"


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


def default_checkpoint(params: Params) -> Path:
    return Path(params.get("train.out_dir", str)) / CHECKPOINT


def dataset_classes(name: str, params: Params) -> list[str]:
    """Class names of a dataset: the public ones are fixed; prepared ones come from classes.txt."""
    if name in DATASET_CLASSES:
        return DATASET_CLASSES[name]
    return read_classes(Path(params.get("data.prepared_dir", str)) / CLASSES_FILE)


def summary(metrics: dict[str, float], classes: list[str], aps: np.ndarray, ann: Path) -> list[str]:
    lines = ["  ".join(f"{k} {v:.2f}" for k, v in metrics.items() if not k.endswith("_top3")),
             "top-3: " + "  ".join(f"{k[:-5]} {v:.2f}" for k, v in metrics.items() if k.endswith("_top3"))]
    missing = [c for c, ap in zip(classes, aps) if math.isnan(ap)]
    if missing:
        lines.append(f"warning: no positive in {ann} for {', '.join(missing)}: left out of the class means")
    order = [i for i in np.argsort(aps) if not math.isnan(aps[i])][:3]
    lines.append("lowest AP: " + ", ".join(f"{classes[i]} {100 * aps[i]:.2f}" for i in order))
    return lines


@user_errors
def evaluate(
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint (default train.out_dir/model.pt).")] = None,
    scores: Annotated[Path | None, typer.Option(help="Score an official result file instead of a model.")] = None,
    annotations: Annotated[Path | None, typer.Option(help="Annotation JSON (default: the prepared test file).")] = None,
    dataset: Annotated[str | None, typer.Option(help=f"Label codes and classes: {', '.join(LABEL_FORMATS)} "
                                                     "(data.dataset).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Score threshold (evaluate.threshold).")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Output folder (evaluate.out_dir).")] = None,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Score a checkpoint, or an official scores file, with the official metrics; log them to the pipeline run."""
    params = Params.load(params_file).override(
        data__dataset=dataset, evaluate__threshold=threshold, evaluate__out_dir=str(out_dir) if out_dir else None
    )
    name = params.get("data.dataset", str)
    label_format = label_format_of(name)
    if annotations is None and name not in SOURCES:
        raise CSRAError(f"dataset {name}: pass --annotations (no prepared annotation file is known for it)")
    ann = annotations or Path(params.get("data.prepared_dir", str)) / get_source(name).test_file
    threshold = params.get("evaluate.threshold", float)
    out = Path(params.get("evaluate.out_dir", str))
    if scores is not None and checkpoint is not None:
        raise CSRAError("give --checkpoint or --scores, not both")
    if scores is not None:
        classes, ckpt = dataset_classes(name, params), None
    else:
        ckpt = checkpoint or default_checkpoint(params)
        model, saved = load_model(ckpt)
        classes = saved["classes"]
    items = read_annotations(ann, label_format=label_format)
    if scores is not None:
        values = np.array(read_scores(scores, items, len(classes)), dtype=np.float64)
    if len(items[0]["target"]) != len(classes):
        owner = ckpt if ckpt is not None else f"dataset {name}"
        raise CSRAError(f"{ann}: {len(items[0]['target'])} classes per target, but {owner} has {len(classes)}")
    if ckpt is not None:
        loader = make_loader(items, model.config, False, params.get("evaluate.batch_size", int),
                             params.get("evaluate.num_workers", int))
        values, _ = predict(model, loader, resolve_device(params.get("evaluate.device", str)))
        write_json(out / SCORES, [{"file_name": image_stem(it["img_path"]), "scores": s}
                                  for it, s in zip(items, values.tolist())])
    targets = np.array([item["target"] for item in items])
    metrics, aps = evaluate_scores(values, targets, label_format, threshold)
    table = per_class_table(values, targets, label_format, threshold)
    write_text(out / PER_CLASS, per_class_csv(classes, aps, table))
    plot_pr_curves(values, targets, label_format, classes, aps, out / PLOTS / PR_CURVES)
    plot_ap_bars(classes, aps, out / PLOTS / AP_BARS)
    write_json(out / METRICS, metrics, indent=2)
    typer.echo("\n".join(summary(metrics, classes, aps, ann)))

    run_file = ckpt.parent / RUN_FILE if ckpt is not None else None
    if run_file is None or not run_file.is_file():
        typer.echo("no MLflow run recorded next to the checkpoint: metrics not logged to MLflow")
        return
    with tracking.continue_pipeline_run(run_file, params.flat(["evaluate"])) as mlflow:
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items() if not math.isnan(v)})
        for file_name in (METRICS, PER_CLASS, f"{PLOTS}/{PR_CURVES}", f"{PLOTS}/{AP_BARS}"):
            mlflow.log_artifact(str(out / file_name), "evaluate")
