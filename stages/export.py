"""`csra export`: the model with its preprocessing as a torch.export program (and ONNX), checked against the eager
path, logged to MLflow once per trained model and registered as export.register says; or, from a registered
version (--model-uri), its input contract and ONNX form."""

from __future__ import annotations

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

CONTRACT = "export.json"
REGISTRATION = "export/registration.json"  # in the MLflow run: the ids and versions of this execution


@user_errors
def export(
    checkpoint: CheckpointOption = None,
    model_uri: ModelUriOption = None,
    out_dir: Annotated[Path | None, typer.Option(help="Output folder (export.out_dir).")] = None,
    onnx: Annotated[bool | None, typer.Option("--onnx/--no-onnx", help="Also write ONNX (export.onnx).")] = None,
    registered_model: Annotated[str | None, typer.Option(help="MLflow model name (export.registered_model).")] = None,
    register: Annotated[str | None, typer.Option(help="Register a version: always, better (than the champion) or "
                                                      "never (export.register).")] = None,
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
                         export__registered_model=registered_model, export__register=register,
                         data__dataset=dataset)
    only_one_source(checkpoint, model_uri, dataset=dataset, model=model, num_heads=num_heads, lam=lam,
                    img_size=img_size)
    if params.export.onnx:
        from csra.deploy.export import require_onnx

        require_onnx()  # before any model is loaded or downloaded
    if model_uri is not None:
        return export_registered(model_uri, params)
    ckpt = checkpoint or Path(params.train.out_dir) / BEST
    net, saved = load_for_inference(ckpt, params.data.dataset, params.data.prepared_dir, dataset is not None,
                                    model, num_heads, lam, img_size)
    registered = export_checkpoint(ckpt, net, saved, params)
    typer.echo(f"MLflow: {registered['registered']}: {registered['model_uri']}; champion: "
               + (f"version {registered['champion']} (by {registered['metric']})" if registered["champion"]
                  else "none yet")
               + f"\nserve the champion with\n  mlflow models serve -m models:/{registered['name']}@champion "
                 "--env-manager local --port 5001")


def export_checkpoint(ckpt: Path, net: Any, saved: dict, params: Any) -> dict[str, Any]:
    """export.json (and model.onnx), the model logged once per trained model, the version registered as
    export.register says, and its record in the run (REGISTRATION), which it returns."""
    from csra.deploy.export import PARITY_TOLERANCE, example_images, input_contract, write_exports
    from csra.deploy.scoring import ScoringModel
    from csra.fileio import atomic_dir, write_json
    from stages import model_registry, tracking
    from stages.execution import run_name
    from stages.lineage import model_key

    scoring = ScoringModel(net).eval()
    contract = input_contract(scoring, saved["classes"])
    with atomic_dir(Path(params.export.out_dir)) as tmp:
        _, parity = write_exports(scoring, tmp, params.export.seed, params.export.onnx)
        echo_parity(parity)
        write_json(tmp / CONTRACT, {**contract, "parity": {"tolerance": PARITY_TOLERANCE,
                                                           "max_abs_difference": parity}}, indent=2)
        with tracking.stage_run(ckpt, params.tracking.experiment, params.flat(),
                                run_name(params.train.recipe)) as recorder:
            model_id = model_registry.log_scoring_model(
                recorder, model_key(ckpt, net.config.to_dict()), scoring,
                example_images(net.config.img_size, params.export.seed).numpy(), saved["classes"],
                {**contract, "thresholds": saved.get("thresholds")})
            registered = model_registry.register(recorder, model_id, params.export.registered_model,
                                           params.export.register, params.export.champion_metric)
            recorder.artifact(tmp / CONTRACT, "export")  # the weights are the logged model's, stored once
            recorder.record(registered, REGISTRATION)
    return registered


def export_registered(uri: str, params: Any) -> None:
    """export.json of a registered version (its input contract, from the model's metadata, and the version it
    resolved to) and, with export.onnx, model.onnx checked against the program."""
    import tempfile

    import torch

    from csra.deploy.export import PARITY_TOLERANCE, write_onnx_of
    from csra.fileio import atomic_dir, write_json
    from stages import model_registry, tracking
    from stages.execution import run_name

    with tempfile.TemporaryDirectory() as download, atomic_dir(Path(params.export.out_dir)) as tmp:
        program, metadata, found = model_registry.fetch(uri, Path(download))
        contract = {k: metadata[k] for k in ("input", "preprocessing", "output") if k in metadata}
        parity = {}
        if params.export.onnx:
            parity = write_onnx_of(torch.export.load(program), tmp, contract["preprocessing"]["resize"][0],
                                   params.export.seed)
            echo_parity(parity, "program")
        write_json(tmp / CONTRACT, {**contract, "source": found["model_uri"],
                                    "parity": {"tolerance": PARITY_TOLERANCE, "max_abs_difference": parity}},
                   indent=2)
        with tracking.stage_run(None, params.tracking.experiment, params.flat(),
                                run_name(params.train.recipe)) as recorder:
            recorder.tag("csra.model_uri", found["model_uri"])
            recorder.artifact(tmp / CONTRACT, "export")
            recorder.record(found, REGISTRATION)
    typer.echo(f"{uri} is {found['model_uri']}: its contract" + (" and ONNX form" if parity else "")
               + f" in {params.export.out_dir}")


def echo_parity(parity: dict[str, float], reference: str = "eager") -> None:
    for name, error in parity.items():
        typer.echo(f"{name}: max |score - {reference} score| = {error:.1e} on fresh noise and photo-like images")
