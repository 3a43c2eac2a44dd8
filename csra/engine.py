"""Training and evaluation loops: data loaders, the paper's optimiser groups and lr schedule, predict()."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from csra.data.datasets import MultiLabelDataset, collate_readable, normalize_batch
from csra.distributed import SINGLE, DistContext, ShardSampler, gather_rows
from csra.errors import CSRAError
from csra.model import CSRAModel, ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    """The recipe (the paper's: sgd, lr 0.01, heads ×10, batch 16, 30 epochs, warm-up 2, step 4 or 5) and the
    speed settings. batch_size is the global batch: each of N processes takes batch_size / N."""

    optimizer: str
    epochs: int
    batch_size: int
    lr: float
    classifier_lr_mult: float
    momentum: float
    weight_decay: float
    warmup_epochs: int
    step_size: int
    gamma: float
    loss: str
    label_smoothing: float
    asl_gamma_neg: float
    asl_gamma_pos: float
    asl_clip: float
    ema_decay: float
    amp: bool
    channels_last: bool
    compile: bool
    sync_bn: bool
    num_workers: int
    seed: int
    device: str


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


class SeededDataset(Dataset):
    """Takes (seed, index) keys from EpochSampler and seeds torch before the random augmentation of that image,
    so an image's crop and flip depend only on (seed, epoch, index); plain int keys pass through. Samples come
    out as (image, target, index), or None for an image skipped as unreadable."""

    def __init__(self, dataset: MultiLabelDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        if isinstance(key, tuple):
            seed, key = key
            torch.manual_seed(seed)
        sample = self.dataset[key]
        return None if sample is None else (*sample, key)


def make_loader(
    items: list[dict], config: ModelConfig, train: bool, batch_size: int, num_workers: int,
    sampler: Sampler | None = None, skip_bad: bool = False,
) -> DataLoader:
    """Batches of (uint8 images, targets, item indices) with the official train or test transform, in item order
    unless a sampler says; skip_bad drops unreadable images (a batch of none is None). normalize_batch converts
    the images to float on the device."""
    dataset = SeededDataset(MultiLabelDataset(items, config, train, skip_bad))
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate_readable,
        pin_memory=torch.cuda.is_available(), persistent_workers=num_workers > 0, drop_last=False,
    )


def prepare_batch(images: torch.Tensor, config: ModelConfig, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 images from a loader → normalised float on the device (NHWC in memory with channels_last)."""
    images = normalize_batch(images.to(device, non_blocking=True), config)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


OPTIMIZERS = ("sgd", "adamw")


def make_optimizer(model: CSRAModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Two groups: backbone at lr, CSRA heads ('classifier') at lr * classifier_lr_mult.

    sgd (momentum, weight decay) is the paper's; adamw (decoupled weight decay) trains a network from scratch
    in far fewer steps, which the built-in dataset's CPU preset relies on.
    """
    groups = [
        {"params": list(model.backbone.parameters()), "lr": cfg.lr},
        {"params": list(model.classifier.parameters()), "lr": cfg.lr * cfg.classifier_lr_mult},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise CSRAError(f"unknown optimizer {cfg.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")


def lr_factor(iteration: int, iters_per_epoch: int, cfg: TrainConfig) -> float:
    """The official schedule as a factor of the base lr: linear warm-up from 0 per iteration over warmup_epochs,
    then x gamma every step_size epochs (epochs counted from 0: with step 4, epochs 5–8 of 1…30 run at 0.1)."""
    warmup_iters = cfg.warmup_epochs * iters_per_epoch
    if iteration < warmup_iters:
        return iteration / warmup_iters
    return cfg.gamma ** ((iteration // iters_per_epoch) // cfg.step_size)


@torch.no_grad()
def predict(
    model: nn.Module, items: list[dict], config: ModelConfig, batch_size: int, num_workers: int,
    device: torch.device, ctx: DistContext = SINGLE, channels_last: bool = False,
    amp_dtype: torch.dtype | None = None, skip_bad: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(sigmoid scores, targets) of every item, in item order (with skip_bad, of every readable item); under
    torchrun each rank scores its own share and the shares are gathered (no item twice, none left out)."""
    loader = make_loader(items, config, False, batch_size, num_workers, ShardSampler(len(items), ctx), skip_bad)
    model.eval()
    scores, targets, indices = [], [], []
    for batch in loader:
        if batch is None:
            continue
        images = prepare_batch(batch[0], config, device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images)
        scores.append(torch.sigmoid(logits.float()).cpu())
        targets.append(batch[1])
        indices.extend(batch[2].tolist())
    k = config.num_classes
    local = torch.cat(scores).numpy().astype(np.float64) if scores else np.zeros((0, k))
    local_targets = torch.cat(targets).numpy() if targets else np.zeros((0, k), dtype=np.float32)
    _, rows = gather_rows(np.concatenate([local, local_targets], axis=1), indices, ctx)
    if len(rows) == 0:
        raise CSRAError("none of the images to score could be read")
    return rows[:, :k], rows[:, k:].astype(np.float32)
