"""`csra demo`: predictions on a folder of images, the official line per image, predictions.json and heatmaps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from csra.data.datasets import list_images
from csra.engine import resolve_device
from csra.errors import CSRAError
from csra.fileio import write_json, write_text
from csra.heatmaps import write_heatmaps
from csra.inference import demo_line, predict_files
from stages import tracking
from stages.common import (
    DEFAULT_PARAMS_PATH,
    ImgSizeOption,
    LamOption,
    ModelOption,
    NumHeadsOption,
    ParamsOption,
    user_errors,
)
from stages.evaluate import default_checkpoint, load_for_inference
from stages.params import Params
from stages.train import RUN_FILE

PREDICTIONS_JSON, PREDICTIONS_TXT, HEATMAPS = "predictions.json", "predictions.txt", "heatmaps"


def class_thresholds(
    mode: str, global_threshold: float, tuned: list | None, num_classes: int, ckpt: Path
) -> list[float]:
    """One threshold per class: the global one, or the per-class ones stored in the checkpoint by train
    (a class without a tuned value keeps the global threshold)."""
    if mode == "global":
        return [global_threshold] * num_classes
    if mode != "per_class":
        raise CSRAError(f"demo.thresholds must be global or per_class, got {mode!r}")
    if not tuned:
        raise CSRAError(f"{ckpt}: no per-class thresholds stored (train with train.tune_thresholds: true)")
    return [global_threshold if t is None else t for t in tuned]


@user_errors
def demo(
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint (default train.out_dir/best.pt).")] = None,
    images: Annotated[Path | None, typer.Option(help="Folder of JPEG/PNG images (demo.images).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Score threshold (evaluate.threshold).")] = None,
    thresholds: Annotated[str | None, typer.Option(help="global or per_class (demo.thresholds).")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Output folder (demo.out_dir).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Class names of an official state dict: voc07, coco, wider "
                                                     "(data.dataset).")] = None,
    model: ModelOption = None,
    num_heads: NumHeadsOption = None,
    lam: LamOption = None,
    img_size: ImgSizeOption = None,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Predict the labels of every image in a folder, with a heatmap per predicted class; unreadable images are
    reported and skipped."""
    params = Params.load(params_file).override(
        demo__images=str(images) if images else None, evaluate__threshold=threshold, demo__thresholds=thresholds,
        demo__out_dir=str(out_dir) if out_dir else None, data__dataset=dataset,
    )
    ckpt = checkpoint or default_checkpoint(params)
    threshold = params.get("evaluate.threshold", float)
    out = Path(params.get("demo.out_dir", str))
    net, saved = load_for_inference(ckpt, params, dataset is not None, model, num_heads, lam, img_size)
    classes = saved["classes"]
    per_class = class_thresholds(params.get("demo.thresholds", str), threshold, saved.get("thresholds"),
                                 len(classes), ckpt)
    device = resolve_device(params.get("evaluate.device", str))
    results, errors = predict_files(net, list_images(params.get("demo.images", str)), device,
                                    params.get("evaluate.batch_size", int))
    for message in errors:
        typer.echo(f"warning: skipped {message}", err=True)
    if not results:
        raise CSRAError(f"{params.get('demo.images', str)}: none of the images could be read")
    lines = [demo_line(path, scores, classes, per_class) for path, scores in results]
    predictions = [
        {"image": str(path), "labels": [c for c, s, t in zip(classes, scores, per_class) if s >= t],
         "scores": dict(zip(classes, scores))}
        for path, scores in results
    ]
    write_text(out / PREDICTIONS_TXT, "".join(f"{line}\n" for line in lines))
    write_json(out / PREDICTIONS_JSON, predictions, indent=2)
    typer.echo("\n".join(lines))
    labelled = [(path, scores, item["labels"]) for (path, scores), item in zip(results, predictions)]
    sheets = write_heatmaps(net, labelled, classes, out / HEATMAPS)
    typer.echo(f"heatmaps: {len(sheets)} contact sheets and one map per predicted class in {out / HEATMAPS}")

    run_file = ckpt.parent / RUN_FILE
    if run_file.is_file():
        with tracking.continue_pipeline_run(run_file, params.flat(["demo"])) as mlflow:
            mlflow.log_artifacts(str(out), "demo")
