"""The heads of the paper: CSRA (class-specific residual attention over a feature map, one or several heads) and
its baseline, global average pooling with a linear classifier."""

from __future__ import annotations

import torch
from torch import nn

from csra.errors import CSRAError
from csra.model.zoo import HEADS, MAX_POOL_TEMPERATURE, TEMPERATURES


class CSRA(nn.Module):
    """One head: logit = mean over locations + lam * attention-pooled class score."""

    def __init__(self, in_channels: int, num_classes: int, temperature: float, lam: float):
        super().__init__()
        self.temperature = temperature
        self.lam = lam
        self.head = nn.Conv2d(in_channels, num_classes, kernel_size=1, bias=False)

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores per location (B, K, H, W), each class divided by the L2 norm of its weight vector."""
        norm = self.head.weight.norm(dim=1).view(1, -1, 1, 1)
        return self.head(x) / norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.score_map(x).flatten(2)
        base_logit = score.mean(dim=2)
        if self.temperature == MAX_POOL_TEMPERATURE:
            att_logit = score.max(dim=2).values
        else:
            attention = torch.softmax(self.temperature * score, dim=2)
            att_logit = (score * attention).sum(dim=2)
        return base_logit + self.lam * att_logit


class MultiHeadCSRA(nn.Module):
    """The sum of CSRA heads with the paper's temperatures for `num_heads`."""

    def __init__(self, in_channels: int, num_classes: int, num_heads: int, lam: float):
        super().__init__()
        if num_heads not in TEMPERATURES:
            allowed = ", ".join(map(str, TEMPERATURES))
            raise CSRAError(f"num_heads must be one of {allowed}, got {num_heads}")
        self.multi_head = nn.ModuleList(
            CSRA(in_channels, num_classes, t, lam) for t in TEMPERATURES[num_heads]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = self.multi_head[0](x)
        for head in self.multi_head[1:]:
            logit = logit + head(x)
        return logit

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """The sum over heads of each head's class score map (B, K, H, W), before any pooling: its mean over
        locations is the sum of the heads' mean-pooled logits, and each head's attention picks its bright places."""
        maps = self.multi_head[0].score_map(x)
        for head in self.multi_head[1:]:
            maps = maps + head.score_map(x)
        return maps


class GAPHead(nn.Module):
    """The paper's baseline: logit = W · (mean of the features over locations) + b, a linear classifier with a
    bias on globally average-pooled features; no attention, no division by the weight's norm."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """The class activation map (B, K, H, W): W · x + b at each location; its mean over locations is the logit
        (the classifier is linear, so it commutes with the average)."""
        return torch.einsum("kc,bchw->bkhw", self.fc.weight, x) + self.fc.bias.view(1, -1, 1, 1)


def build_head(head: str, in_channels: int, num_classes: int, num_heads: int, lam: float) -> nn.Module:
    """The classifier named by head: 'csra' (num_heads heads with weight λ) or 'gap' (the baseline)."""
    if head == "gap":
        return GAPHead(in_channels, num_classes)
    if head == "csra":
        return MultiHeadCSRA(in_channels, num_classes, num_heads, lam)
    raise CSRAError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
