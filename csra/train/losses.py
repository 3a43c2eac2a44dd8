"""Training losses on logits and 0/1 targets: BCE (the paper's, optional label smoothing) and the asymmetric loss."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from csra.train.config import TrainConfig

EPS = 1e-8


def smooth(targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Targets pulled towards 1/2: 1 → 1 - ε/2, 0 → ε/2."""
    return targets * (1 - epsilon) + epsilon / 2 if epsilon else targets


def asymmetric_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma_neg: float, gamma_pos: float, clip: float
) -> torch.Tensor:
    """Asymmetric loss (Ridnik et al., ICCV 2021), averaged over every (image, class) like BCE.

    Positives: -(1 - p)^γ+ · log p. Negatives, with the shifted probability p_m = max(p - clip, 0):
    -p_m^γ− · log(1 - p_m). With γ+ = γ− = 0 and clip = 0 it is exactly the BCE.
    """
    p = torch.sigmoid(logits)
    p_neg = (p - clip).clamp(min=0) if clip > 0 else p
    pos = targets * (1 - p).pow(gamma_pos) * torch.log(p.clamp(min=EPS))
    neg = (1 - targets) * p_neg.pow(gamma_neg) * torch.log((1 - p_neg).clamp(min=EPS))
    return -(pos + neg).mean()


def make_criterion(cfg: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A function (logits, targets) → scalar loss: cfg.loss with its options (label_smoothing, asl_*)."""

    def criterion(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = smooth(targets, cfg.label_smoothing)
        if cfg.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, targets)
        return asymmetric_loss(logits, targets, cfg.asl_gamma_neg, cfg.asl_gamma_pos, cfg.asl_clip)

    return criterion
