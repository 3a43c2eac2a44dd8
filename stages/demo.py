"""`csra demo`: a folder of images → the official prediction line per image, predictions.json and the class
attention heatmaps (of a checkpoint; a registered model gives scores only), logged to the pipeline's MLflow run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from stages.common import BEST, DEFAULT_PARAMS_PATH, ParamsOption, user_errors
from stages.inference import (
    CheckpointOption,
    ImgSizeOption,
    LamOption,
    ModelOption,
    ModelUriOption,
    NumHeadsOption,
    load_for_inference,
    only_one_source,
)

PREDICTIONS_JSON, PREDICTIONS_TXT, HEATMAPS = "predictions.json", "predictions.txt", "heatmaps"
Scored = tuple[list[str], list | None, list[tuple[Path, list[float]]], Callable | None]


@user_errors
def demo(
    checkpoint: CheckpointOption = None,
    model_uri: ModelUriOption = None,
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
    reported and skipped. A registered model (--model-uri) gives the same predictions, without heatmaps."""
    from stages.params import load_params

    params = load_params(params_file, demo__images=str(images) if images else None, evaluate__threshold=threshold,
                         demo__thresholds=thresholds, demo__out_dir=str(out_dir) if out_dir else None,
                         data__dataset=dataset)
    only_one_source(checkpoint, model_uri, dataset=dataset, model=model, num_heads=num_heads, lam=lam,
                    img_size=img_size)
    from csra.deploy.scoring import class_thresholds, demo_line, predicted_labels
    from csra.fileio import atomic_dir, write_json, write_text
    from stages import tracking
    from stages.execution import run_name

    ckpt = None if model_uri is not None else checkpoint or Path(params.train.out_dir) / BEST
    if ckpt is None:
        classes, tuned, results, heatmaps = registered_scores(model_uri, params.demo.images)
    else:
        classes, tuned, results, heatmaps = checkpoint_scores(ckpt, params, dataset is not None, model, num_heads,
                                                              lam, img_size)
    per_class = class_thresholds(len(classes), params.evaluate.threshold, tuned,
                                 params.demo.thresholds == "per_class", model_uri or str(ckpt))
    lines = [demo_line(path, scores, classes, per_class) for path, scores in results]
    predictions = [{"image": str(path), "labels": predicted_labels(scores, classes, per_class),
                    "scores": dict(zip(classes, scores))} for path, scores in results]
    labelled = [(path, scores, item["labels"]) for (path, scores), item in zip(results, predictions)]
    with atomic_dir(Path(params.demo.out_dir)) as tmp:  # all outputs or none; the previous ones stay till then
        write_text(tmp / PREDICTIONS_TXT, "".join(f"{line}\n" for line in lines))
        write_json(tmp / PREDICTIONS_JSON, predictions, indent=2)
        sheets = heatmaps(labelled, classes, tmp / HEATMAPS) if heatmaps else []
        with tracking.stage_run(ckpt, params.tracking.experiment, params.flat(),
                                run_name(params.train.recipe)) as recorder:
            if model_uri is not None:
                recorder.tag("csra.model_uri", model_uri)
            recorder.artifacts(tmp, "demo")
    typer.echo("\n".join(lines))
    typer.echo(f"heatmaps: {len(sheets)} contact sheets and one map per predicted class in "
               f"{Path(params.demo.out_dir) / HEATMAPS}" if heatmaps else
               f"heatmaps: none: {model_uri} is an exported program (images in, scores out); the score maps need "
               "the model itself (--checkpoint)")


def checkpoint_scores(ckpt: Path, params: Any, check_classes: bool, *options: Any) -> Scored:
    """(classes, tuned thresholds, scores of each image of demo.images, the heatmap writer) of a
    checkpoint, through the one prediction path; the classes are checked when the user names the dataset."""
    from functools import partial

    from csra.data.loading import list_images
    from csra.deploy.heatmaps import write_heatmaps
    from csra.deploy.scoring import predict_files
    from csra.evaluate.predict import resolve_device

    net, saved = load_for_inference(ckpt, params.data.dataset, params.data.prepared_dir, check_classes, *options)
    results = predict_files(net, list_images(params.demo.images), resolve_device(params.evaluate.device),
                            params.evaluate.batch_size)
    return saved["classes"], saved.get("thresholds"), results, partial(write_heatmaps, net)


def registered_scores(uri: str, images: str) -> Scored:
    """(classes, tuned thresholds, scores of each image in the folder images, no heatmap writer) of a
    registered model: its exported program, which takes the image's uint8 pixels and resizes inside, as served."""
    import tempfile

    import torch

    from csra.data.loading import list_images
    from csra.deploy.scoring import score_images
    from stages import model_registry

    with tempfile.TemporaryDirectory() as download:
        program, metadata, _ = model_registry.fetch(uri, Path(download))
        scorer = torch.export.load(program).module()
    results = score_images(scorer, list_images(images))
    return metadata["output"]["classes"], metadata.get("thresholds"), results, None
