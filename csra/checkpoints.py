"""Our checkpoint file: weights + model config + class names + the params that made it; loaded weights_only."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from csra.errors import CSRAError
from csra.fileio import atomic_write
from csra.model import CSRAModel, ModelConfig, build_model

FORMAT = "csra-checkpoint-v1"


def save_checkpoint(
    path: str | Path, model: CSRAModel, classes: list[str], params: dict[str, Any], **extra: Any
) -> Path:
    """Write atomically: {format, model_config, classes, params, state_dict, **extra} (plain types only)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "model_config": model.config.to_dict(),
        "classes": list(classes),
        "params": params,
        "state_dict": state,
        **extra,
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read one of our checkpoints without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CSRAError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).splitlines()[0] if str(e) else "unsafe content"
        raise CSRAError(f"{path}: refused, it holds objects a weights-only load does not allow ({first})") from None
    except Exception as e:  # torch.load fails on garbage with many exception types
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CSRAError(f"{path}: not a readable torch checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CSRAError(f"{path}: not a CSRA pipeline checkpoint (no format {FORMAT!r})")
    return payload


def load_model(path: str | Path) -> tuple[CSRAModel, dict[str, Any]]:
    """(model in eval mode with the checkpoint's weights, the checkpoint dict)."""
    checkpoint = load_checkpoint(path)
    model = build_model(ModelConfig.from_dict(checkpoint["model_config"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint
