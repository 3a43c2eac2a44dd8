"""Checkpoints: ours (weights + model config + classes + what trained them) and the official state dicts; loaded
weights_only."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from csra.errors import CSRAError, describe_difference
from csra.model.network import CSRAModel, ModelConfig, build_model
from csra.model.weights import (
    as_state_dict,
    head_count,
    load_strict,
    load_weights_only,
    official_to_ours,
    save_torch,
)
from csra.model.zoo import canonical_name, default_img_size

FORMAT = "csra-checkpoint-v1"
TRAIN_STATE = "csra-train-state"  # a run's resumable state: its format, then -vN (csra.train.state)


@dataclass(frozen=True)
class ModelOptions:
    """What a user said about the model on the command line; None = not said. Our checkpoints must agree with
    them (img_size may differ: it only changes the input size); an official state dict needs them."""

    backbone: str | None = None
    num_heads: int | None = None
    lam: float | None = None
    img_size: int | None = None
    classes: list[str] | None = None
    check_classes: bool = True  # our checkpoint's class names must equal classes (else they are only a fallback)


def save_checkpoint(
    path: str | Path, model: CSRAModel, classes: list[str], params: dict[str, Any], **extra: Any
) -> Path:
    """Write atomically: {format, model_config, classes, params, state_dict, **extra} (plain types only); the same
    weights and fields give the same bytes. model_config rebuilds the network; a trained checkpoint's extra holds
    the training recipe once (train's 'recipe'), and params only the caller's settings the recipe does not hold."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "model_config": model.config.to_dict(),
        "classes": list(classes),
        "params": params,
        "state_dict": state,
        **extra,
    }
    return save_torch(path, payload)


def checked_fields(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """payload, or a CSRAError naming the first field that is missing or of the wrong kind."""
    for key, kind, what in (("model_config", dict, "a mapping"), ("classes", list, "a list of class names"),
                            ("state_dict", dict, "a mapping of tensors")):
        if not isinstance(payload.get(key), kind):
            raise CSRAError(f"{path}: checkpoint field {key!r} is missing or not {what}")
    if not all(isinstance(name, str) for name in payload["classes"]):
        raise CSRAError(f"{path}: checkpoint field 'classes' must hold class names (strings)")
    if not all(isinstance(value, torch.Tensor) for value in payload["state_dict"].values()):
        raise CSRAError(f"{path}: checkpoint field 'state_dict' must map names to tensors")
    thresholds = payload.get("thresholds")
    if thresholds is not None and (
            not isinstance(thresholds, list) or len(thresholds) != len(payload["classes"])
            or not all(t is None or (isinstance(t, float) and 0 <= t <= 1) for t in thresholds)):
        raise CSRAError(f"{path}: checkpoint field 'thresholds' must hold one threshold in [0, 1] (or null) per "
                        "class")
    return payload


def _check_agrees(path: Path, config: ModelConfig, classes: list[str], options: ModelOptions) -> None:
    said = {
        "model": (options.backbone and canonical_name(options.backbone), config.backbone),
        "num_heads": (options.num_heads, config.num_heads),
        "lam": (options.lam, config.lam),
    }
    for name, (given, stored) in said.items():
        if given is None:
            continue
        same = math.isclose(given, stored) if name == "lam" else given == stored
        if not same:
            raise CSRAError(f"{path}: the checkpoint has {name} {stored}, but {given} was given")
    if options.check_classes and options.classes is not None and list(options.classes) != list(classes):
        raise CSRAError(f"{path}: the checkpoint's {len(classes)} classes are not the dataset's: "
                        f"{describe_difference(list(classes), list(options.classes))}")


def official_config(path: Path, state: dict[str, torch.Tensor], options: ModelOptions) -> ModelConfig:
    """The model config of an official state dict: model and λ from the options (not stored in the file), head
    and class counts from the head weights (and checked against the options)."""
    if options.backbone is None or options.lam is None or options.classes is None:
        raise CSRAError(f"{path}: an official state dict stores no model config: give the model name, λ and the "
                        "dataset (--model, --lam, --dataset; --num-heads and --img-size are checked / optional)")
    heads = head_count(state)  # 0 in a layout we cannot map: then the strict load lists what does not fit
    if heads and options.num_heads is not None and options.num_heads != heads:
        raise CSRAError(f"{path}: the state dict has {heads} CSRA head(s), but {options.num_heads} was given")
    head = state.get("classifier.multi_head.0.head.weight")
    num_classes = len(options.classes) if head is None else head.shape[0]
    if num_classes != len(options.classes):
        raise CSRAError(f"{path}: the state dict has {num_classes} classes, but the dataset has "
                        f"{len(options.classes)}")
    heads = heads or options.num_heads or 1
    img_size = options.img_size or default_img_size(options.backbone)
    return ModelConfig.create(options.backbone, num_classes, heads, options.lam, img_size)


def load_checkpoint_model(path: str | Path, options: ModelOptions | None = None) -> tuple[CSRAModel, dict[str, Any]]:
    """(model in eval mode, a checkpoint dict with at least model_config and classes) from one of our checkpoints
    or from a state dict saved by the official code (ResNet or ViT, with or without `module.`)."""
    path, options = Path(path), options or ModelOptions()
    payload = load_weights_only(path, "checkpoint")
    if isinstance(payload, dict) and str(payload.get("format", "")).startswith(TRAIN_STATE):
        raise CSRAError(f"{path}: the resumable state of a training run, not a checkpoint (use best.pt)")
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        config = ModelConfig.from_dict(checked_fields(path, payload)["model_config"],
                                        f"{path}: checkpoint field 'model_config'")
        if len(payload["classes"]) != config.num_classes:
            raise CSRAError(f"{path}: {len(payload['classes'])} class names, but the model has {config.num_classes} "
                            "classes")
        _check_agrees(path, config, payload["classes"], options)
        if options.img_size is not None:
            config = replace(config, img_size=options.img_size).checked()
        state = payload["state_dict"]
    else:
        state = official_to_ours(as_state_dict(payload, path))
        config = official_config(path, state, options)
        payload = {"model_config": config.to_dict(), "classes": list(options.classes), "official": True}
    model = build_model(config)
    load_strict(model, state, str(path))
    return model.eval(), payload
