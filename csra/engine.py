"""Training and evaluation loops: data loaders, the paper's optimiser groups and lr schedule, fit()."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from csra.data.datasets import MultiLabelDataset, collate_readable, normalize_batch
from csra.errors import CSRAError
from csra.metrics import average_precision, mean_average_precision
from csra.model import CSRAModel, ModelConfig


@dataclass(frozen=True)
class TrainConfig:
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
    num_workers: int
    seed: int
    device: str


def resolve_device(name: str) -> torch.device:
    """'auto' → the GPU when there is one, else the CPU; otherwise a torch device string such as 'cuda:1'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CSRAError(f"device {name!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CSRAError(f"device {name!r} asked for but no CUDA GPU is available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def make_loader(
    items: list[dict], config: ModelConfig, train: bool, batch_size: int, num_workers: int, seed: int = 0,
    skip_bad: bool = False,
) -> DataLoader:
    """Batches of (uint8 images, targets); skip_bad drops unreadable images (a batch of none is None)."""
    dataset = MultiLabelDataset(items, config, train, skip_bad)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        num_workers=num_workers,
        collate_fn=collate_readable,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed),
    )


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
    """Linear warm-up from 0 per iteration over warmup_epochs, then x gamma every step_size epochs."""
    warmup_iters = cfg.warmup_epochs * iters_per_epoch
    if iteration < warmup_iters:
        return iteration / warmup_iters
    return cfg.gamma ** ((iteration // iters_per_epoch) // cfg.step_size)


def train_one_epoch(
    model: CSRAModel,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    epoch: int,
) -> tuple[float, float]:
    """One pass over the loader; returns (mean BCE loss, backbone lr of the last step).

    A non-finite loss stops with a CSRAError.
    """
    model.train()
    total, count, lr = 0.0, 0, 0.0
    for step, batch in enumerate(loader):
        if batch is None:
            continue
        images = normalize_batch(batch[0].to(device, non_blocking=True), model.config)
        targets = batch[1].to(device, non_blocking=True)
        loss = F.binary_cross_entropy_with_logits(model(images), targets)
        if not torch.isfinite(loss):
            raise CSRAError(f"training loss is {loss.item()} at epoch {epoch}, step {step}; lower train.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(images)
        count += len(images)
    if count == 0:
        raise CSRAError(f"epoch {epoch}: none of the training images could be read")
    return total / count, lr


@torch.no_grad()
def predict(model: CSRAModel, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(sigmoid scores, targets) for every readable item of the loader, in order."""
    model.eval()
    scores, targets = [], []
    for batch in loader:
        if batch is None:
            continue
        images = normalize_batch(batch[0].to(device, non_blocking=True), model.config)
        scores.append(torch.sigmoid(model(images)).float().cpu())
        targets.append(batch[1])
    if not scores:
        raise CSRAError("none of the images to score could be read")
    return torch.cat(scores).numpy().astype(np.float64), torch.cat(targets).numpy()


def fit(
    model: CSRAModel,
    train_items: list[dict],
    val_items: list[dict],
    cfg: TrainConfig,
    label_format: str,
    on_epoch: Callable[[dict], None] | None = None,
    skip_bad: bool = False,
) -> tuple[list[dict], tuple[np.ndarray, np.ndarray]]:
    """Train for cfg.epochs; after each epoch report {epoch, train_loss, lr, images_per_s, val_mAP} (percent).

    Returns (the rows of every epoch, (val scores, val targets) of the last epoch). skip_bad: an unreadable
    image is logged and left out (of training and of the validation scores) instead of stopping the run.
    """
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model.to(device)
    loader_args = (cfg.batch_size, cfg.num_workers, cfg.seed, skip_bad)
    train_loader = make_loader(train_items, model.config, True, *loader_args)
    val_loader = make_loader(val_items, model.config, False, *loader_args)
    optimizer = make_optimizer(model, cfg)
    iters = len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, iters, cfg))
    history = []
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        loss, lr = train_one_epoch(model, train_loader, optimizer, scheduler, device, epoch)
        seconds = time.perf_counter() - start
        scores, targets = predict(model, val_loader, device)
        val_map = 100.0 * mean_average_precision(average_precision(scores, targets, label_format))
        row = {"epoch": epoch, "train_loss": loss, "lr": lr, "images_per_s": len(train_items) / seconds,
               "val_mAP": val_map}
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    return history, (scores, targets)
