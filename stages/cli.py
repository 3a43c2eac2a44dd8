"""The `csra` entry point: one command per DVC stage — prepare, train, evaluate, demo, export — search (an Optuna
study over train's params), params (params.yaml from conf/) and sync (MLflow records kept while the store was
away). This file is the whole command-line surface: each command's options, then one import of its stage module
(stages/<name>.py), whose typed `run` does the work. Importing it loads Typer only, so `csra --help` is instant."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Annotated

import typer

from csra.errors import CSRAError
from stages.common import DEFAULT_PARAMS_PATH, ModelSource, user_errors

app = typer.Typer(
    help="CSRA (residual attention) for multi-label image recognition: the stages of the DVC pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOption = Annotated[Path, typer.Option("--params", help="The params file every default is read from.")]
OutDirOption = Annotated[Path | None, typer.Option(help="Output folder (<stage>.out_dir).")]
DatasetOption = Annotated[str | None, typer.Option(help="Dataset name (data.dataset): label codes and class names, "
                                                        "also those of an official state dict.")]
ThresholdOption = Annotated[float | None, typer.Option(help="Score threshold (evaluate.threshold).")]
# Which model evaluate, demo and export read: a checkpoint (default train.out_dir/best.pt) — ours, or an official
# state dict described by the model options — or, for demo and export, a registered model.
CheckpointOption = Annotated[Path | None, typer.Option(help="Checkpoint (default train.out_dir/best.pt).")]
ModelUriOption = Annotated[str | None, typer.Option(help="A registered model instead of a checkpoint: "
                                                         "models:/NAME@ALIAS (models:/csra-synthetic@champion) or "
                                                         "models:/NAME/VERSION.")]
ModelOption = Annotated[str | None, typer.Option("--model", help="Backbone of an official state dict.")]
NumHeadsOption = Annotated[int | None, typer.Option(help="CSRA heads (read from the weights; checked).")]
LamOption = Annotated[float | None, typer.Option(help="λ of an official state dict.")]
ImgSizeOption = Annotated[int | None, typer.Option(help="Input size (default: the checkpoint's, or 448 for "
                                                        "ResNets and 224 for ViTs).")]


def _path(value: Path | None) -> str | None:
    return str(value) if value is not None else None


@app.command()
@user_errors
def prepare(
    dataset: Annotated[str | None, typer.Argument(help="Dataset name (default data.dataset).")] = None,
    data_path: Annotated[Path | None, typer.Option(help="Raw dataset folder (default data.raw_path).")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Output folder (default data.prepared_dir).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Then open every image and check the written files; "
                                                        "exit 1 on missing or unreadable images.")] = False,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Convert a dataset to the official CSRA annotation JSON; `synthetic` generates the built-in one first."""
    from stages import prepare as stage

    stage.run(params_file, {"data.dataset": dataset, "data.raw_path": _path(data_path),
                            "data.prepared_dir": _path(out_dir)}, check=check)


@app.command()
@user_errors
def train(
    model: Annotated[str | None, typer.Option(help="Backbone name (train.model).")] = None,
    num_heads: Annotated[int | None, typer.Option(help="CSRA heads: 1, 2, 4, 6 or 8 (train.num_heads).")] = None,
    lam: Annotated[float | None, typer.Option(help="Weight of the attention logit, λ (train.lam).")] = None,
    img_size: Annotated[int | None, typer.Option(help="Square input size (train.img_size).")] = None,
    pretrained: Annotated[str | None, typer.Option(help="Initial backbone weights: imagenet, none or a file "
                                                        "(train.pretrained).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (train.epochs).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Global batch size (train.batch_size).")] = None,
    lr: Annotated[float | None, typer.Option(help="Backbone learning rate (train.lr).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every RNG (train.seed).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N (train.device).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in out_dir (it must "
                                                          "exist and match the settings).")] = False,
    out_dir: Annotated[Path | None, typer.Option(help="Output folder (train.out_dir).")] = None,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Train CSRA on data.prepared_dir and record the run in MLflow: the best epoch's checkpoint, the per-epoch
    history and metrics. Under torchrun, every process trains its share and process 0 writes and records."""
    from stages import train as stage

    stage.run(params_file, {
        "train.model": model, "train.num_heads": num_heads, "train.lam": lam, "train.img_size": img_size,
        "train.pretrained": pretrained, "train.epochs": epochs, "train.batch_size": batch_size, "train.lr": lr,
        "train.seed": seed, "train.device": device, "train.out_dir": _path(out_dir)}, resume=resume)


@app.command()
@user_errors
def evaluate(
    checkpoint: CheckpointOption = None,
    scores: Annotated[Path | None, typer.Option(help="Score an official result file instead of a model.")] = None,
    annotations: Annotated[Path | None, typer.Option(help="Annotation JSON (default: the prepared test file).")] = None,
    dataset: DatasetOption = None,
    threshold: ThresholdOption = None,
    out_dir: OutDirOption = None,
    model: ModelOption = None,
    num_heads: NumHeadsOption = None,
    lam: LamOption = None,
    img_size: ImgSizeOption = None,
    plots: Annotated[bool, typer.Option("--plots", help="With --scores: also draw plots/ (a model's evaluation "
                                                        "always does).")] = False,
    params_file: Annotated[Path | None, typer.Option("--params", help="The params file every default is read from "
                                                     "(default params.yaml; --scores without one: the defaults).")
                           ] = None,
) -> None:
    """Score a checkpoint, or an official scores file, with the official metrics; log them to the pipeline run."""
    overrides = {"data.dataset": dataset, "evaluate.threshold": threshold, "evaluate.out_dir": _path(out_dir)}
    if scores is None:
        from stages import evaluate as stage

        source = ModelSource(checkpoint, None, dataset is not None, model, num_heads, lam, img_size)
        stage.run(params_file or DEFAULT_PARAMS_PATH, overrides, source, annotations)
    elif checkpoint is not None:
        raise CSRAError("give --checkpoint or --scores, not both")
    else:  # an official scores file: the report alone, without torch (and without matplotlib unless --plots)
        from stages import report

        report.run_scores_file(params_file, overrides, scores, annotations, plots)


@app.command()
@user_errors
def demo(
    checkpoint: CheckpointOption = None,
    model_uri: ModelUriOption = None,
    images: Annotated[Path | None, typer.Option(help="Folder of JPEG/PNG images, or a split digest (data/prepared/"
                                                "test.md5): its first 8 images (demo.images).")] = None,
    threshold: ThresholdOption = None,
    thresholds: Annotated[str | None, typer.Option(help="global or per_class (demo.thresholds).")] = None,
    out_dir: OutDirOption = None,
    dataset: DatasetOption = None,
    model: ModelOption = None,
    num_heads: NumHeadsOption = None,
    lam: LamOption = None,
    img_size: ImgSizeOption = None,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Predict the labels of every image in a folder, with a heatmap per predicted class; unreadable images are
    reported and skipped. A registered model (--model-uri) gives the same predictions, without heatmaps."""
    from stages import demo as stage

    source = ModelSource(checkpoint, model_uri, dataset is not None, model, num_heads, lam, img_size)
    stage.run(params_file, {"demo.images": _path(images), "evaluate.threshold": threshold,
                            "demo.thresholds": thresholds, "demo.out_dir": _path(out_dir), "data.dataset": dataset},
              source.checked())


@app.command()
@user_errors
def export(
    checkpoint: CheckpointOption = None,
    model_uri: ModelUriOption = None,
    out_dir: OutDirOption = None,
    onnx: Annotated[bool | None, typer.Option("--onnx/--no-onnx", help="Also write ONNX (export.onnx).")] = None,
    registered_model: Annotated[str | None, typer.Option(help="MLflow model name, or auto: csra-<data.dataset> "
                                                              "(export.registered_model).")] = None,
    register: Annotated[str | None, typer.Option(help="Register a version: always, better (than the champion) or "
                                                      "never (export.register).")] = None,
    dataset: DatasetOption = None,
    model: ModelOption = None,
    num_heads: NumHeadsOption = None,
    lam: LamOption = None,
    img_size: ImgSizeOption = None,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Export the model (uint8 RGB images of any size in, class scores out) and register it in MLflow."""
    from stages import export as stage

    source = ModelSource(checkpoint, model_uri, dataset is not None, model, num_heads, lam, img_size)
    stage.run(params_file, {"export.out_dir": _path(out_dir), "export.onnx": onnx,
                            "export.registered_model": registered_model, "export.register": register,
                            "data.dataset": dataset}, source.checked())


@app.command()
@user_errors
def score(
    photos: Annotated[str, typer.Argument(help="The photos: a folder (its subfolders too), a glob, a text file of "
                                               "paths or URIs (one a line) or an s3:// prefix.")],
    out: Annotated[Path, typer.Option(help="The Parquet dataset to write (a folder): one row per photo.")],
    checkpoint: CheckpointOption = None,
    model_uri: ModelUriOption = None,
    threshold: Annotated[float | None, typer.Option(help="Label threshold for every class (default: the model's "
                                                         "tuned ones, else evaluate.threshold).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Photos per model call in an actor.")] = 64,
    actors: Annotated[int | None, typer.Option(min=1, help="Actors that hold the model (default: one per GPU; on "
                                                           "CPUs, one per 8 CPUs).")] = None,
    rows_per_file: Annotated[int, typer.Option(min=1, help="Rows per Parquet part file (what a killed job may "
                                                           "have to score again).")] = 2048,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Score a photo collection on Ray Data (RAY_ADDRESS: a cluster; else a local Ray) into a Parquet dataset,
    written whole or not at all; an unreadable photo is a row with an error; a killed job run again resumes."""
    from stages import score as stage

    source = ModelSource(checkpoint, model_uri).checked()
    stage.run(params_file, photos, out, source, threshold, batch_size, actors, rows_per_file)


@app.command()
@user_errors
def search(
    study: Annotated[str, typer.Option(help="The study's name: a later invocation (on any machine sharing the "
                                            "storage) continues it; its best trial becomes the DVC experiment of "
                                            "this name.")] = "csra",
    trials: Annotated[int, typer.Option(min=0, help="Trials this invocation runs, over all its workers.")] = 10,
    jobs: Annotated[int, typer.Option(min=1, help="Worker processes on this machine.")] = 1,
    space: Annotated[str | None, typer.Option(help="conf/search/<SPACE>.yaml (default: the study's, or paper for a "
                                                   "new one).")] = None,
    storage: Annotated[str | None, typer.Option(help="The study's storage, shared by its workers: a database URL "
                                                     "(postgresql://…) or a journal file path (default: "
                                                     "optuna.db here).")] = None,
    promote: Annotated[bool | None, typer.Option("--promote/--no-promote", help="Make the best trial a DVC "
                                                 "experiment (default: after this invocation's trials); "
                                                 "--promote with --trials 0: only that.")] = None,
    grace: Annotated[int, typer.Option(min=3, help="Seconds a trial's worker on a database storage may stay silent "
                                                   "(its machine died) before the next worker marks the trial "
                                                   "failed.")] = 90,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Search train's params with Optuna: every trial trains as `csra train` does, is scored by its best validation
    mAP and recorded as an MLflow run nested under the study's; the best becomes a DVC experiment."""
    from stages.search import study as stage

    stage.run(params_file, study, storage, space, trials, jobs, promote, grace)


@app.command()
@user_errors
def params(
    check: Annotated[bool, typer.Option("--check", help="Only check: exit 1, naming the differing keys, when "
                                                        "the file is not the composition of conf/.")] = False,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Write params.yaml as the composition of conf/ (what `dvc exp run` writes), after an edit of conf/; every
    stage refuses a params.yaml that is not it, so `dvc repro` and the commands by hand run what conf/ says."""
    from stages import composition

    if check:
        composition.check_composed(params_file)
        typer.echo(f"{params_file}: the composition of conf/")
        return
    changed = composition.write_composed(params_file)
    typer.echo(f"{params_file}: " + ("; ".join(changed) if changed else "already the composition of conf/"))


@app.command()
@user_errors
def sync() -> None:
    """Send the MLflow records that stages kept on disk while the tracking store did not answer (mlflow-pending/),
    each run's in order; nothing to send is not an error, so it can run at any time."""
    from stages import sync as stage

    stage.run()


def main() -> None:
    """The `csra` command: SIGTERM and SIGINT stop it cleanly (stages.common.stop_on_signals), then Typer."""
    from stages.common import stop_on_signals

    stop_on_signals()
    try:
        app()
    finally:
        # Python's last collection at exit walks every object torch, torchvision and MLflow made at import: 0.8 s
        # of each command's end; frozen, they are left to the process's end like the rest
        gc.freeze()


if __name__ == "__main__":  # `python -m stages.cli …` (DVC) and `torchrun … -m stages.cli train`
    main()
