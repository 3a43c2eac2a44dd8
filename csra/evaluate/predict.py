"""The one prediction path over annotation items: a model's sigmoid scores for every item, in item order, sharded
over the processes under torchrun; and the device a command runs on."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from csra.data.loading import make_loader, prepare_batch
from csra.distributed import SINGLE, DistContext, ShardSampler, gather_rows
from csra.errors import CSRAError
from csra.model.network import ModelConfig


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' → this process's GPU when there is one, else the CPU; otherwise a torch device such as 'cuda:1'."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CSRAError(f"device {name!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CSRAError(f"device {name!r} asked for but no CUDA GPU is available")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


class NothingReadable(CSRAError):
    """Every image to score was unreadable (and skipped)."""


class Scores(NamedTuple):
    """Scores of annotation items: sigmoid scores (N, K) and targets (N, K) in item order, and which items they
    are (all of them, unless unreadable images were skipped)."""

    scores: np.ndarray
    targets: np.ndarray
    indices: np.ndarray


@torch.no_grad()
def predict(
    model: nn.Module, items: list[dict], config: ModelConfig, batch_size: int, num_workers: int,
    device: torch.device, ctx: DistContext = SINGLE, skip_bad: bool = False,
) -> Scores:
    """The sigmoid scores of every item through the official test-time preprocessing (csra.data.loading.
    load_test_image), in float32 without autocast: validation, evaluate and demo all score this way. Under
    torchrun each rank scores its own share and the shares are gathered (no item twice, none left out)."""
    loader = make_loader(items, config, False, batch_size, num_workers, ShardSampler(len(items), ctx), skip_bad,
                         device.type)
    model.eval()
    scores, targets, indices = [], [], []
    for batch in loader:
        if batch.images is None:
            continue
        logits = model(prepare_batch(batch.images, config, device, channels_last=False))
        scores.append(torch.sigmoid(logits.float()).cpu())
        targets.append(batch.targets)
        indices.extend(batch.indices.tolist())
    k = config.num_classes
    local = torch.cat(scores).numpy().astype(np.float64) if scores else np.zeros((0, k))
    local_targets = torch.cat(targets).numpy() if targets else np.zeros((0, k), dtype=np.float32)
    order, rows = gather_rows(np.concatenate([local, local_targets], axis=1), indices, ctx)
    if len(rows) == 0:
        raise NothingReadable(f"none of the {len(items)} images to score could be read")
    return Scores(rows[:, :k], rows[:, k:].astype(np.float32), order)
