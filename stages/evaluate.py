"""`csra evaluate`: a checkpoint on an annotation file → metrics.json, scores.json, per_class.csv (+ MLflow)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from csra.checkpoints import load_model
from csra.data.annotations import read_annotations
from csra.data.sources import SOURCES, get_source
from csra.engine import make_loader, predict, resolve_device
from csra.errors import CSRAError
from csra.fileio import write_json, write_text
from csra.metrics import evaluate_scores
from stages import tracking
from stages.common import DEFAULT_PARAMS_PATH, ParamsOption, user_errors
from stages.params import Params
from stages.train import CHECKPOINT, RUN_FILE

METRICS, SCORES, PER_CLASS = "metrics.json", "scores.json", "per_class.csv"


def per_class_csv(classes: list[str], aps: np.ndarray, support: np.ndarray) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["class", "AP", "support"])
    for name, ap, n in zip(classes, aps, support):
        writer.writerow([name, "" if math.isnan(ap) else f"{100 * ap:.4f}", int(n)])
    return buffer.getvalue()


def default_checkpoint(params: Params) -> Path:
    return Path(params.get("train.out_dir", str)) / CHECKPOINT


@user_errors
def evaluate(
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint (default train.out_dir/model.pt).")] = None,
    annotations: Annotated[Path | None, typer.Option(help="Annotation JSON (default: the prepared test file).")] = None,
    dataset: Annotated[str | None, typer.Option(help=f"Label codes: {', '.join(SOURCES)} (data.dataset).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Score threshold (evaluate.threshold).")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Output folder (evaluate.out_dir).")] = None,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Score a checkpoint on an annotation file with the official metrics; log them to the pipeline's run."""
    params = Params.load(params_file).override(
        data__dataset=dataset, evaluate__threshold=threshold, evaluate__out_dir=str(out_dir) if out_dir else None
    )
    source = get_source(params.get("data.dataset", str))
    ckpt = checkpoint or default_checkpoint(params)
    ann = annotations or Path(params.get("data.prepared_dir", str)) / source.test_file
    threshold = params.get("evaluate.threshold", float)
    out = Path(params.get("evaluate.out_dir", str))
    model, saved = load_model(ckpt)
    classes = saved["classes"]
    items = read_annotations(ann, label_format=source.label_format)
    if len(items[0]["target"]) != len(classes):
        raise CSRAError(f"{ann}: {len(items[0]['target'])} classes per target, but {ckpt} has {len(classes)}")
    loader = make_loader(items, model, False, params.get("evaluate.batch_size", int),
                         params.get("evaluate.num_workers", int))
    scores, targets = predict(model, loader, resolve_device(params.get("evaluate.device", str)))
    metrics, aps = evaluate_scores(scores, targets, source.label_format, threshold)

    support = (targets == 1).sum(axis=0)
    write_json(out / SCORES, [{"file_name": Path(it["img_path"]).name.split(".")[0], "scores": s}
                              for it, s in zip(items, scores.tolist())])
    write_text(out / PER_CLASS, per_class_csv(classes, aps, support))
    write_json(out / METRICS, metrics, indent=2)

    typer.echo("  ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    missing = [c for c, ap in zip(classes, aps) if math.isnan(ap)]
    if missing:
        typer.echo(f"warning: no positive in {ann} for {', '.join(missing)}: left out of the means")
    order = [i for i in np.argsort(aps) if not math.isnan(aps[i])][:3]
    typer.echo("lowest AP: " + ", ".join(f"{classes[i]} {100 * aps[i]:.2f}" for i in order))

    run_file = ckpt.parent / RUN_FILE
    if not run_file.is_file():
        typer.echo(f"no MLflow run recorded next to {ckpt}: metrics not logged to MLflow")
        return
    with tracking.continue_pipeline_run(run_file, params.flat(["evaluate"])) as mlflow:
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items() if not math.isnan(v)})
        for name in (METRICS, PER_CLASS):
            mlflow.log_artifact(str(out / name), "evaluate")
