"""`csra export`: the model with its preprocessing as a torch.export program (and ONNX), checked against the eager
path, and logged to MLflow as the registered model that `mlflow models serve` answers with."""

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

CONTRACT, REGISTERED = "export.json", "mlflow_model.json"


@user_errors
def export(
    checkpoint: CheckpointOption = None,
    out_dir: Annotated[Path | None, typer.Option(help="Output folder (export.out_dir).")] = None,
    onnx: Annotated[bool | None, typer.Option("--onnx/--no-onnx", help="Also write ONNX (export.onnx).")] = None,
    registered_model: Annotated[str | None, typer.Option(help="MLflow model name (export.registered_model).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Class names of an official state dict: voc07, coco, wider "
                                                     "(data.dataset).")] = None,
    model: ModelOption = None,
    num_heads: NumHeadsOption = None,
    lam: LamOption = None,
    img_size: ImgSizeOption = None,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Export the model (uint8 RGB images of any size in, class scores out) and register it in MLflow."""
    from stages.params import load_params

    params = load_params(params_file, export__out_dir=str(out_dir) if out_dir else None, export__onnx=onnx,
                         export__registered_model=registered_model, data__dataset=dataset)
    from csra.deploy.export import PARITY_TOLERANCE, example_images, input_contract, write_exports
    from csra.deploy.scoring import ScoringModel
    from csra.fileio import atomic_dir, write_json
    from stages import tracking
    from stages.execution import run_name

    ckpt = checkpoint or Path(params.train.out_dir) / BEST
    out, seed = Path(params.export.out_dir), params.export.seed
    net, saved = load_for_inference(ckpt, params.data.dataset, params.data.prepared_dir, dataset is not None,
                                    model, num_heads, lam, img_size)
    scoring = ScoringModel(net).eval()
    contract = input_contract(scoring, saved["classes"])
    with atomic_dir(out) as tmp:
        _, parity = write_exports(scoring, tmp, seed, params.export.onnx)
        for name, error in parity.items():
            typer.echo(f"{name}: max |score - eager score| = {error:.1e} on fresh noise and photo-like images")
        write_json(tmp / CONTRACT, {**contract, "parity": {"tolerance": PARITY_TOLERANCE,
                                                           "max_abs_difference": parity}}, indent=2)
        with tracking.stage_run(ckpt.parent / RUN_FILE, params.tracking.experiment, params.flat(),
                                run_name(params.train.recipe)) as recorder:
            registered = tracking.log_scoring_model(
                recorder, scoring, example_images(net.config.img_size, seed).numpy(), len(saved["classes"]),
                params.export.registered_model, contract)
            recorder.artifact(tmp / CONTRACT, "export")  # the weights are the registered model's, stored once
        write_json(tmp / REGISTERED, registered, indent=2)
        typer.echo(f"MLflow: registered {registered['name']} version {registered['version']}; serve it with\n"
                   f"  mlflow models serve -m {registered['model_uri']} --env-manager local --port 5001")
