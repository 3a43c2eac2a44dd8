"""`csra evaluate`: a checkpoint (or an official scores file) on an annotation file → metrics.json, scores.json,
per_class.csv and plots/, and the metrics in the pipeline's MLflow run."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from csra.data.datasets import DATASETS
from stages.common import BEST, DEFAULT_PARAMS_PATH, ParamsOption, machine, user_errors
from stages.inference import (
    CheckpointOption,
    ImgSizeOption,
    LamOption,
    ModelOption,
    NumHeadsOption,
    load_for_inference,
)

METRICS_FILE, SCORES, PER_CLASS = "metrics.json", "scores.json", "per_class.csv"
PLOTS, PR_CURVES, AP_BARS = "plots", "pr_curves.png", "ap_per_class.png"


def per_class_csv(classes: list[str], aps: Any, table: dict[str, Any]) -> str:
    """One row per class: AP, precision, recall, F1 (percent, empty where undefined) and support."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["class", "AP", "precision", "recall", "F1", "support"])
    columns = [aps, table["precision"], table["recall"], table["F1"]]
    for i, name in enumerate(classes):
        cells = ["" if math.isnan(col[i]) else f"{100 * col[i]:.4f}" for col in columns]
        writer.writerow([name, *cells, int(table["support"][i])])
    return buffer.getvalue()


def summary(metrics: dict[str, float], classes: list[str], aps: Any, ann: Path) -> list[str]:
    """The console report: the metrics, their top-3 forms, classes left out, and the three lowest APs."""
    import numpy as np

    lines = ["  ".join(f"{k} {v:.2f}" for k, v in metrics.items() if not k.endswith("_top3")),
             "top-3: " + "  ".join(f"{k[:-5]} {v:.2f}" for k, v in metrics.items() if k.endswith("_top3"))]
    missing = [c for c, ap in zip(classes, aps) if math.isnan(ap)]
    if missing:
        lines.append(f"warning: no positive in {ann} for {', '.join(missing)}: left out of the class means")
    order = [i for i in np.argsort(aps) if not math.isnan(aps[i])][:3]
    lines.append("lowest AP: " + ", ".join(f"{classes[i]} {100 * aps[i]:.2f}" for i in order))
    return lines


def model_scores(net: Any, items: list[dict], params: Any) -> Any:
    """A model's scores of every item through the one prediction path (the only part that needs torch), with the
    loader workers of this machine when evaluate.num_workers is auto."""
    from csra.backends import set_kernels
    from csra.data.loading import loader_workers
    from csra.evaluate.predict import predict, resolve_device

    device = resolve_device(params.evaluate.device)
    set_kernels(params.evaluate.deterministic)
    workers = loader_workers(params.evaluate.num_workers, *machine(), device.type)
    return predict(net, items, net.config, params.evaluate.batch_size, workers, device).scores


def selection_note(ckpt: Path | None, saved: dict, items: list[dict]) -> str | None:
    """A note when the items are exactly those the checkpoint's best epoch was selected on."""
    from csra.data.formats import items_digest

    selection = saved.get("selection")
    if ckpt is None or not selection or selection["digest"] != items_digest(items):
        return None
    return (f"note: {ckpt} was selected on these images ({selection['split']}: {selection['source']}): its metrics "
            "here are not held out (data.selection: val holds a split out)")


def write_report(folder: Path, values: Any, items: list[dict], classes: list[str], label_format: str,
                 threshold: float, with_scores: bool) -> tuple[dict, Any]:
    """metrics.json, per_class.csv, plots/ (and scores.json) in folder; returns (metrics, AP per class)."""
    import numpy as np

    from csra.data.formats import image_stem
    from csra.evaluate.metrics import evaluate_scores, per_class_table
    from csra.evaluate.reports import plot_ap_bars, plot_pr_curves
    from csra.fileio import write_json, write_text

    targets = np.array([item["target"] for item in items])
    metrics, aps = evaluate_scores(values, targets, label_format, threshold)
    if with_scores:
        write_json(folder / SCORES, [{"file_name": image_stem(it["img_path"]), "scores": s}
                                     for it, s in zip(items, values.tolist())])
    write_text(folder / PER_CLASS, per_class_csv(classes, aps, per_class_table(values, targets, label_format,
                                                                             threshold)))
    plot_pr_curves(values, targets, label_format, classes, aps, folder / PLOTS / PR_CURVES)
    plot_ap_bars(classes, aps, folder / PLOTS / AP_BARS)
    write_json(folder / METRICS_FILE, metrics, indent=2)
    return metrics, aps


def record_test_data(recorder: Any, entry: Any, prepared_dir: str, ann: Path, items: list[dict]) -> None:
    """The scored data as the run's evaluation input (the prepared folder, or the annotation file given from
    elsewhere) and the annotation file's path and items digest as tags, by which export compares versions."""
    from csra.data.formats import items_digest
    from stages.lineage import annotation_version, prepared_version
    from stages.tracking import TEST_DIGEST, TEST_FILE

    inside = ann.resolve().parent == Path(prepared_dir).resolve()
    recorder.dataset(prepared_version(entry, prepared_dir) if inside else annotation_version(ann), "evaluation")
    recorder.tag(TEST_FILE, str(ann))
    recorder.tag(TEST_DIGEST, items_digest(items))


@user_errors
def evaluate(
    checkpoint: CheckpointOption = None,
    scores: Annotated[Path | None, typer.Option(help="Score an official result file instead of a model.")] = None,
    annotations: Annotated[Path | None, typer.Option(help="Annotation JSON (default: the prepared test file).")] = None,
    dataset: Annotated[str | None, typer.Option(help=f"Label codes and classes: {', '.join(DATASETS)} "
                                                     "(data.dataset).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Score threshold (evaluate.threshold).")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Output folder (evaluate.out_dir).")] = None,
    model: ModelOption = None,
    num_heads: NumHeadsOption = None,
    lam: LamOption = None,
    img_size: ImgSizeOption = None,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Score a checkpoint, or an official scores file, with the official metrics; log them to the pipeline run."""
    from stages.params import load_params

    params = load_params(params_file, data__dataset=dataset, evaluate__threshold=threshold,
                         evaluate__out_dir=str(out_dir) if out_dir else None)
    from csra.data.datasets import get_dataset, resolve_classes
    from csra.data.formats import read_annotations, read_scores
    from csra.errors import CSRAError
    from csra.fileio import atomic_dir
    from stages import tracking
    from stages.execution import run_name

    entry = get_dataset(params.data.dataset)
    ann = annotations or Path(params.data.prepared_dir) / entry.test_file
    if scores is not None and checkpoint is not None:
        raise CSRAError("give --checkpoint or --scores, not both")
    ckpt = None if scores is not None else checkpoint or Path(params.train.out_dir) / BEST
    net, saved = None, {"classes": None}
    if ckpt is None:
        saved["classes"] = resolve_classes(entry, params.data.prepared_dir)
    else:  # the classes are checked when the user names the dataset or the prepared test file is scored
        net, saved = load_for_inference(ckpt, entry.name, params.data.prepared_dir,
                                        dataset is not None or annotations is None, model, num_heads, lam, img_size)
    classes, items = saved["classes"], read_annotations(ann, label_format=entry.label_format)
    if len(items[0]["target"]) != len(classes):
        owner = ckpt if ckpt is not None else f"dataset {entry.name}"
        raise CSRAError(f"{ann}: {len(items[0]['target'])} classes per target, but {owner} has {len(classes)}")
    values = read_scores(scores, items, len(classes)) if ckpt is None else model_scores(net, items, params)
    note = selection_note(ckpt, saved, items)
    with atomic_dir(Path(params.evaluate.out_dir)) as tmp:  # all outputs or none: the previous stay till then
        metrics, aps = write_report(tmp, values, items, classes, entry.label_format, params.evaluate.threshold,
                                    with_scores=ckpt is not None)
        if ckpt is not None:
            with tracking.stage_run(ckpt, params.tracking.experiment, params.flat(),
                                    run_name(params.train.recipe)) as recorder:
                recorder.metrics(metrics)
                recorder.tag("evaluated_on_selection_images", str(note is not None).lower())
                record_test_data(recorder, entry, params.data.prepared_dir, ann, items)
                recorder.artifacts(tmp, "evaluate")
    lines = summary(metrics, classes, aps, ann) + ([note] if note else [])
    if ckpt is None:
        lines.append("(the metrics of a scores file are not logged to MLflow)")
    typer.echo("\n".join(lines))
