"""`csra demo`: a folder of images → the official prediction line per image, predictions.json and the class
attention heatmaps, logged to the pipeline's MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import BEST, DEFAULT_PARAMS_PATH, RUN_FILE, ParamsOption, user_errors
from stages.inference import (
    CheckpointOption,
    ImgSizeOption,
    LamOption,
    ModelOption,
    NumHeadsOption,
    load_for_inference,
)

PREDICTIONS_JSON, PREDICTIONS_TXT, HEATMAPS = "predictions.json", "predictions.txt", "heatmaps"


@user_errors
def demo(
    checkpoint: CheckpointOption = None,
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
    from stages.params import load_params

    params = load_params(params_file, demo__images=str(images) if images else None, evaluate__threshold=threshold,
                         demo__thresholds=thresholds, demo__out_dir=str(out_dir) if out_dir else None,
                         data__dataset=dataset)
    from csra.data.loading import list_images
    from csra.deploy.heatmaps import write_heatmaps
    from csra.deploy.scoring import class_thresholds, demo_line, predict_files, predicted_labels
    from csra.evaluate.predict import resolve_device
    from csra.fileio import atomic_dir, write_json, write_text
    from stages import tracking
    from stages.execution import run_name

    ckpt = checkpoint or Path(params.train.out_dir) / BEST
    out = Path(params.demo.out_dir)
    net, saved = load_for_inference(ckpt, params.data.dataset, params.data.prepared_dir, dataset is not None,
                                    model, num_heads, lam, img_size)  # classes checked when the user names them
    classes = saved["classes"]
    per_class = class_thresholds(len(classes), params.evaluate.threshold, saved.get("thresholds"),
                                 params.demo.thresholds == "per_class", str(ckpt))
    results = predict_files(net, list_images(params.demo.images), resolve_device(params.evaluate.device),
                            params.evaluate.batch_size)
    lines = [demo_line(path, scores, classes, per_class) for path, scores in results]
    predictions = [{"image": str(path), "labels": predicted_labels(scores, classes, per_class),
                    "scores": dict(zip(classes, scores))} for path, scores in results]
    labelled = [(path, scores, item["labels"]) for (path, scores), item in zip(results, predictions)]
    with atomic_dir(out) as tmp:  # all outputs or none; the previous ones stay until the new ones are whole
        write_text(tmp / PREDICTIONS_TXT, "".join(f"{line}\n" for line in lines))
        write_json(tmp / PREDICTIONS_JSON, predictions, indent=2)
        sheets = write_heatmaps(net, labelled, classes, tmp / HEATMAPS)
        with tracking.stage_run(ckpt.parent / RUN_FILE, params.tracking.experiment, params.flat(),
                                run_name(params.train.recipe)) as recorder:
            recorder.artifacts(tmp, "demo")
    typer.echo("\n".join(lines))
    typer.echo(f"heatmaps: {len(sheets)} contact sheets and one map per predicted class in {out / HEATMAPS}")
