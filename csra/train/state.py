"""What a resumable training run keeps between epochs: every RNG's state, the settings fingerprint, and finding
an interrupted run's saved state to continue from."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from csra.data.prepared import TrainData
from csra.errors import CSRAError
from csra.model.checkpoints import TRAIN_STATE
from csra.model.weights import load_weights_only, save_torch
from csra.train.config import RESUMABLE_CHANGES, TrainConfig

STATE_FORMAT = f"{TRAIN_STATE}-v1"
RESUME_MODES = ("auto", "never", "always")
log = logging.getLogger(__name__)

def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG's state in types a weights-only load accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fingerprint(cfg: TrainConfig, data: TrainData) -> str:
    """A hash of everything that shapes a run's trajectory: the settings (less those a resume may change), the
    classes and every training and validation item."""
    kept = {k: v for k, v in asdict(cfg).items() if k not in RESUMABLE_CHANGES}
    blob = json.dumps([kept, data.classes, data.label_format, data.train_items, data.val_items], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def find_resume(path: Path, cfg: TrainConfig, data: TrainData, mode: str, world_size: int) -> dict | None:
    """The saved state of an interrupted run to continue from, or None to start afresh. mode: 'always' (a state
    must exist and match), 'auto' (use a matching state, ignore a stale one with a warning) or 'never'."""
    if mode not in RESUME_MODES:
        raise CSRAError(f"resume mode must be one of {', '.join(RESUME_MODES)}, got {mode!r}")
    if mode == "never" or (not path.is_file() and mode == "auto"):
        return None
    if not path.is_file():
        raise CSRAError(f"{path}: no interrupted run to resume")
    state = load_weights_only(path, "training state")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CSRAError(f"{path}: not a CSRA training state (no format {STATE_FORMAT!r})")
    stale = state.get("fingerprint") != fingerprint(cfg, data) or state.get("world_size") != world_size
    if stale and mode == "always":
        raise CSRAError(f"{path}: saved with other settings or another number of processes "
                        f"({state.get('world_size')}, this run {world_size}); it cannot be resumed with these")
    if stale:
        log.warning("warning: %s was saved with other settings; starting afresh", path)
        return None
    return state


def save_state(path: Path, state: dict[str, Any]) -> None:
    save_torch(path, state)
