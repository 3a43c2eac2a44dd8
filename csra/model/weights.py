"""State-dict key layouts: the official CSRA / CutMix / timm-ViT names mapped onto ours, and strict loading."""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from csra.errors import CSRAError, first_line
from csra.fileio import atomic_write

# timm / JAX ViT names (the official VIT_CSRA) → torchvision VisionTransformer names.
_TIMM_BLOCK = {
    "norm1": "ln_1",
    "attn.qkv.weight": "self_attention.in_proj_weight",
    "attn.qkv.bias": "self_attention.in_proj_bias",
    "attn.proj": "self_attention.out_proj",
    "norm2": "ln_2",
    "mlp.fc1": "mlp.0",
    "mlp.fc2": "mlp.3",
}
_TIMM_TOP = {"cls_token": "class_token", "pos_embed": "encoder.pos_embedding", "patch_embed.proj": "conv_proj",
             "norm": "encoder.ln"}
_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")
MAX_LISTED = 8


def as_state_dict(obj: Any, source: str | Path) -> dict[str, torch.Tensor]:
    """obj as a tensor state dict (a {'state_dict': …} or {'model': …} wrapper is opened), else a CSRAError."""
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CSRAError(f"{source}: not a state dict (expected a mapping of parameter names to tensors)")
    return obj


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the `module.` prefix that nn.DataParallel / DDP put on every key (if all keys carry it)."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def is_timm_vit(state: Mapping[str, torch.Tensor]) -> bool:
    return "cls_token" in state or any(k.startswith("blocks.") for k in state)


def _rename(name: str, table: dict[str, str]) -> str | None:
    for old, new in table.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old):]
    return None


def timm_vit_to_torchvision(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a timm-layout ViT backbone state dict; keys it does not know are kept as they are (and then
    reported as unexpected by the strict load). A patch weight stored flattened (D, 3·p·p) becomes a conv weight."""
    out = {}
    for key, value in state.items():
        match = _BLOCK_KEY.fullmatch(key)
        if match:
            new = _rename(match.group(2), _TIMM_BLOCK)
            new = None if new is None else f"encoder.layers.encoder_layer_{match.group(1)}.{new}"
        else:
            new = _rename(key, _TIMM_TOP)
        if new == "conv_proj.weight" and value.dim() == 2:
            patch = int(round((value.shape[1] / 3) ** 0.5))
            value = value.reshape(value.shape[0], 3, patch, patch)
        out[new or key] = value
    return out


def backbone_init_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An initial-weight file (torchvision, CutMix ResNet, timm/JAX ViT) → our backbone's names; the ImageNet
    classifier (`fc.*`, `head.*`, `heads.*`, `pre_logits.*`) is dropped."""
    state = strip_module_prefix(state)
    if is_timm_vit(state):
        state = timm_vit_to_torchvision({k: v for k, v in state.items() if not k.startswith(("head.", "pre_logits."))})
    return {k: v for k, v in state.items() if not k.startswith(("fc.", "heads.", "head."))}


def official_to_ours(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict saved by the official code (ResNet_CSRA or VIT_CSRA, maybe with `module.`) → our CSRAModel keys:
    the backbone under `backbone.`, the heads `classifier.multi_head.{i}.head.weight` unchanged."""
    state = strip_module_prefix(state)
    heads = {k: v for k, v in state.items() if k.startswith("classifier.")}
    body = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    if is_timm_vit(body):
        body = timm_vit_to_torchvision(body)
    return {**{f"backbone.{k}": v for k, v in body.items()}, **heads}


def head_count(state: Mapping[str, torch.Tensor]) -> int:
    """Number of CSRA heads in one of our (or an official) state dicts."""
    pattern = re.compile(r"classifier\.multi_head\.(\d+)\.head\.weight")
    return len({m.group(1) for k in state if (m := pattern.fullmatch(k))})


def _listed(keys: list[str]) -> str:
    more = f" … (+{len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
    return ", ".join(keys[:MAX_LISTED]) + more


def layout_problems(module: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """'' when state fits module exactly, else one line listing missing and unexpected keys and shape mismatches."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_listed(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_listed(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es) (file vs model): {_listed(shapes)}")
    return "; ".join(parts)


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load every tensor or nothing: a partial or mismatched layout is a CSRAError naming source and the keys."""
    problems = layout_problems(module, state)
    if problems:
        raise CSRAError(f"{source}: weights do not fit the model (keys in this pipeline's names): {problems}")
    module.load_state_dict(state, strict=True)


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive (or, long ago, a pickle): anything else is not a torch file at all."""
    with path.open("rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def load_weights_only(path: str | Path, kind: str) -> Any:
    """torch.load without unpickling arbitrary objects. A missing file, a folder, a file that is no torch file
    (random bytes, a truncated download), an unreadable one and one that needs unpickling code are each one line."""
    path = Path(path)
    if path.is_dir():
        raise CSRAError(f"{path}: a folder, not a {kind} file")
    if not path.is_file():
        raise CSRAError(f"{path}: {kind} not found")
    if not _looks_like_torch_file(path):
        raise CSRAError(f"{path}: not a {kind}: neither torch's zip format nor a pickle")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = first_line(e)
        if "weights only" in first.lower() or "weights_only" in first:
            raise CSRAError(f"{path}: refused, it holds objects a weights-only load does not allow "
                            f"({first})") from None
        raise CSRAError(f"{path}: not a readable {kind} ({first})") from None
    except Exception as e:  # torch.load fails on damaged files with many exception types
        reason = first_line(e, typed=True)
        raise CSRAError(f"{path}: not a readable {kind} ({reason})") from None


def save_torch(path: str | Path, obj: Any) -> Path:
    """torch.save obj to path atomically, with the same bytes for the same obj: torch names the archive's root folder
    after the file it writes (here a temporary name), so it writes through a file object, whose root is 'archive'."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            torch.save(obj, f)

    return atomic_write(path, write)
