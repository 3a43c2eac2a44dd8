"""The paper's optimisation: two parameter groups (backbone, CSRA heads at a multiple of the lr) and the official
schedule (linear warm-up per iteration, then a step decay) — the official one whenever step_size ≥ warmup_epochs."""

from __future__ import annotations

import torch

from csra.model.network import CSRAModel
from csra.train.config import TrainConfig


def make_optimizer(model: CSRAModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Two groups: backbone at lr, CSRA heads ('classifier') at lr * classifier_lr_mult.

    sgd (momentum, weight decay) is the paper's; adamw (decoupled weight decay) trains a network from scratch
    in far fewer steps, which the built-in dataset's CPU recipe relies on.
    """
    groups = [
        {"params": list(model.backbone.parameters()), "lr": cfg.lr},
        {"params": list(model.classifier.parameters()), "lr": cfg.lr * cfg.classifier_lr_mult},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(iteration: int, iters_per_epoch: int, cfg: TrainConfig) -> float:
    """The schedule as a factor of the base lr: linear warm-up from 0 per iteration over warmup_epochs, then x gamma
    every step_size epochs (epochs counted from 0: with step 4, epochs 5–8 of 1…30 run at 0.1). The official one
    when step_size ≥ warmup_epochs (every recipe): with a shorter step the official code loses the decays that fall
    inside its warm-up (its warm-up overwrites them after one iteration), while this counts them."""
    warmup_iters = cfg.warmup_epochs * iters_per_epoch
    if iteration < warmup_iters:
        return iteration / warmup_iters
    return cfg.gamma ** ((iteration // iters_per_epoch) // cfg.step_size)


def make_scheduler(optimizer: torch.optim.Optimizer, iters_per_epoch: int,
                   cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The official schedule, stepped once per iteration."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, iters_per_epoch, cfg))
