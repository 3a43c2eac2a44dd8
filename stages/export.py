"""`csra export`: the model with its preprocessing as a torch.export program (and ONNX), checked against the eager
path, logged to MLflow once per trained model and registered as export.register says; or, from a registered
version (--model-uri), its input contract and ONNX form."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import typer

from csra.deploy.export import (
    PARITY_TOLERANCE,
    check_parity,
    input_contract,
    parity_photos,
    photo_difference,
    program_bytes,
    require_onnx,
    write_exports,
    write_onnx_of,
)
from csra.deploy.scoring import ScoringModel
from csra.evaluate.metrics import METRIC_NAMES
from csra.fileio import atomic_dir, write_json
from csra.model.network import CSRAModel
from csra.settings import setting
from stages.common import ModelSource, head_summary
from stages.inference import load_for_inference, stage_run_name
from stages.params import DatasetParams, Group, StageParams, TrackingParams, TrainOutput, load_params
from stages.tracking import loading, registration, registry, runs
from stages.tracking.lineage import model_key

CONTRACT = "export.json"
SERVED = "served model"  # the parity entry of the registered model, loaded as MLflow serves it, on photo files
REGISTRATION = "export/registration.json"  # in the MLflow run: the ids and versions of this execution
REGISTER = ("always", "better", "never")  # register a new model version: on every export, when it beats the champion


@dataclass(frozen=True)
class ExportParams(Group):
    out_dir: str = setting()
    onnx: bool = setting()
    registered_model: str = setting(pattern=r"[A-Za-z0-9_.\-]+", help="a model name (letters, digits, _ . -), or "
                                                                      f"{registration.AUTO}: csra-<data.dataset>")
    register: str = setting(choices=REGISTER)
    champion_metric: str = setting(choices=METRIC_NAMES)  # any of evaluate's metrics can elect the champion
    seed: int = setting(min=0)
    max_pixels: int = setting(min=1)  # the served model refuses a larger photo (or array) before decoding it


@dataclass(frozen=True)
class Params(StageParams):
    """What export reads of params.yaml (tracking: where the model is recorded, no dependency)."""

    data: DatasetParams
    train: TrainOutput
    export: ExportParams
    tracking: TrackingParams


def run(params_file: Path, overrides: dict[str, object], source: ModelSource) -> None:
    params = load_params(Params, params_file, overrides)
    if params.export.onnx:
        require_onnx()  # before any model is loaded or downloaded
    if source.model_uri is not None:
        return export_registered(source.model_uri, params)
    ckpt = source.checkpoint_or(params.train.out_dir)
    net, saved = load_for_inference(ckpt, source, params.data, source.dataset_given)
    registered = export_checkpoint(ckpt, net, saved, params)
    typer.echo(f"MLflow: {registered['registered']}: {registered['model_uri']}; champion: "
               + (f"version {registered['champion']} (by {registered['metric']})" if registered["champion"]
                  else "none yet")
               + (f"\n{registered['champion_stays']}" if registered["champion_stays"] else "")
               + f"\nserve the champion with\n  mlflow models serve -m models:/{registered['name']}@champion "
                 "--env-manager local --port 5001")


def export_checkpoint(ckpt: Path, net: CSRAModel, saved: dict[str, Any], params: Params) -> dict[str, Any]:
    """export.json (and model.onnx), the served model logged once per trained model and checked on fresh photo
    files against the eager path, the version registered as export.register says, and its record in the run
    (REGISTRATION), which it returns."""
    settings = params.export
    name = registration.model_name(settings.registered_model, params.data.dataset)
    scoring = ScoringModel(net).eval()
    contract = input_contract(scoring, saved["classes"], settings.max_pixels)
    served_contract = {"classes": saved["classes"], "img_size": net.config.img_size, "max_pixels": settings.max_pixels}
    with atomic_dir(Path(settings.out_dir)) as tmp:
        program, parity = write_exports(scoring, tmp, settings.seed, settings.onnx)
        with runs.stage_run(ckpt, params.tracking.experiment, params.flat(), stage_run_name(saved, "export"),
                                saved) as recorder:
            scored = registry.evaluation(recorder)  # what evaluate said of this model, read once
            model_id = registry.log_served_model(recorder, name,
                                                       model_key(ckpt, net.config.to_dict()),
                                                       program_bytes(program), served_contract,
                                                       {**contract, "thresholds": saved.get("thresholds")}, scored)
            served = loading.load_logged(model_id)
            parity = check_parity({**parity, SERVED: photo_difference(net, served, parity_photos(settings.seed))})
            echo_parity(parity)
            write_json(tmp / CONTRACT, {**contract, "parity": {"tolerance": PARITY_TOLERANCE,
                                                               "max_abs_difference": parity}}, indent=2)
            registered = registration.register(recorder, model_id, name, settings.register, settings.champion_metric,
                                               params.data.dataset, model_summary(net, saved), scored)
            recorder.artifact(tmp / CONTRACT, "export")  # the weights are the logged model's, stored once
            recorder.record(registered, REGISTRATION)
            recorder.describe("export", f"{model_summary(net, saved)}, {registered['registered']}: "
                                        f"{registered['model_uri']}, champion "
                                        + (f"version {registered['champion']}" if registered["champion"] else "none"))
    return registered


def model_summary(net: CSRAModel, saved: dict[str, Any]) -> str:
    """What the model is, in a few words: backbone, head, input size, classes and the recipe it was trained with."""
    config = net.config
    recipe = (saved.get("params") or {}).get("train.recipe")
    trained = f", recipe {recipe}" if isinstance(recipe, str) else (", an official state dict" if saved.get("official")
                                                                      else "")
    head = head_summary(config.head, config.num_heads, config.lam)
    return f"{config.backbone}, {head}, {config.img_size} px, {config.num_classes} classes{trained}"


def export_registered(uri: str, params: Params) -> None:
    """export.json of a registered version (its input contract, from the model's metadata, and the version it
    resolved to) and, with export.onnx, model.onnx checked against the program."""
    with tempfile.TemporaryDirectory() as download, atomic_dir(Path(params.export.out_dir)) as tmp:
        program, metadata, found = loading.fetch(uri, Path(download))
        contract = {k: metadata[k] for k in ("input", "preprocessing", "output") if k in metadata}
        parity = {}
        if params.export.onnx:
            parity = write_onnx_of(torch.export.load(program), tmp, contract["preprocessing"]["resize"][0],
                                   params.export.seed)
            echo_parity(parity, "program")
        write_json(tmp / CONTRACT, {**contract, "source": found["model_uri"],
                                    "parity": {"tolerance": PARITY_TOLERANCE, "max_abs_difference": parity}},
                   indent=2)
        with runs.stage_run(None, params.tracking.experiment, params.flat(),
                                stage_run_name(None, "export")) as recorder:
            recorder.tag("csra.model_uri", found["model_uri"])
            recorder.artifact(tmp / CONTRACT, "export")
            recorder.describe("export", f"the input contract{' and ONNX form' if parity else ''} of "
                                        f"{found['model_uri']} ({uri})")
            recorder.record(found, REGISTRATION)
    typer.echo(f"{uri} is {found['model_uri']}: its contract" + (" and ONNX form" if parity else "")
               + f" in {params.export.out_dir}")


def echo_parity(parity: dict[str, float], reference: str = "eager") -> None:
    for name, error in parity.items():
        images = "photo files (JPEG, PNG, WebP, BMP)" if name == SERVED else "noise and photo-like images"
        typer.echo(f"{name}: max |score - {reference} score| = {error:.1e} on fresh {images}")
