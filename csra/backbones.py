"""Backbones: torchvision networks cut to a feature map (B, C, H, W)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision import models

from csra.errors import CSRAError

RESNETS: dict[str, Callable[..., models.ResNet]] = {
    "resnet18": models.resnet18,
    "resnet34": models.resnet34,
    "resnet50": models.resnet50,
    "resnet101": models.resnet101,
    "resnet152": models.resnet152,
}


class ResNetBackbone(nn.Module):
    """A torchvision ResNet up to layer4; module names match torchvision's so its state dicts load."""

    def __init__(self, net: models.ResNet):
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels: int = net.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def backbone_names() -> list[str]:
    return list(RESNETS)


def create_backbone(name: str) -> ResNetBackbone:
    """Build a backbone by name with random initial weights."""
    if name not in RESNETS:
        raise CSRAError(f"unknown model {name!r}; expected one of {', '.join(backbone_names())}")
    return ResNetBackbone(RESNETS[name](weights=None))
