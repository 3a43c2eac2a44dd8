"""`csra export`: the model with its preprocessing as a torch.export program and ONNX, checked against the eager
model, and logged to MLflow as a registered model that `mlflow models serve` answers with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from csra.checkpoints import load_model
from csra.export import PARITY_TOLERANCE, example_images, input_contract, write_exports
from csra.fileio import atomic_dir, write_json
from csra.inference import ScoringModel
from stages import tracking
from stages.common import DEFAULT_PARAMS_PATH, ParamsOption, user_errors
from stages.evaluate import default_checkpoint
from stages.params import Params
from stages.train import RUN_FILE

CONTRACT, REGISTERED = "export.json", "mlflow_model.json"


@user_errors
def export(
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint (default train.out_dir/best.pt).")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Output folder (export.out_dir).")] = None,
    onnx: Annotated[bool | None, typer.Option("--onnx/--no-onnx", help="Also write ONNX (export.onnx).")] = None,
    registered_model: Annotated[str | None, typer.Option(help="MLflow model name (export.registered_model).")] = None,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Export the model (uint8 RGB images of any size in, class scores out) and register it in MLflow."""
    params = Params.load(params_file).override(
        export__out_dir=str(out_dir) if out_dir else None, export__onnx=onnx,
        export__registered_model=registered_model,
    )
    ckpt = checkpoint or default_checkpoint(params)
    out = Path(params.get("export.out_dir", str))
    seed = params.get("export.seed", int)
    model, saved = load_model(ckpt)
    scoring = ScoringModel(model).eval()
    contract = input_contract(scoring, saved["classes"])
    with atomic_dir(out) as tmp:
        parity = write_exports(scoring, tmp, seed, params.get("export.onnx", bool))
        for name, error in parity.items():
            typer.echo(f"{out / name}: max |score - eager score| = {error:.1e} on fresh random images")
        checked = {"tolerance": PARITY_TOLERANCE, "max_abs_difference": parity}
        write_json(tmp / CONTRACT, {**contract, "parity": checked}, indent=2)
        run_file = ckpt.parent / RUN_FILE
        if run_file.is_file():
            with tracking.continue_pipeline_run(run_file, params.flat(["export"])) as mlflow:
                registered = tracking.log_scoring_model(
                    mlflow, scoring, example_images(model.config.img_size, seed).numpy(), len(saved["classes"]),
                    params.get("export.registered_model", str), contract,
                )
                mlflow.log_artifacts(str(tmp), "export")
            write_json(tmp / REGISTERED, registered, indent=2)
            typer.echo(f"MLflow: registered {registered['name']} version {registered['version']}; serve it with\n"
                       f"  mlflow models serve -m {registered['model_uri']} --env-manager local --port 5001")
        else:
            typer.echo(f"warning: {run_file} not found; the model is not logged to MLflow", err=True)
