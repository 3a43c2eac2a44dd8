"""CSRAModel = backbone + classifier (CSRA heads, or the paper's GAP baseline), built from a ModelConfig that also
carries the preprocessing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn

from csra.errors import CSRAError
from csra.model.backbones import create_backbone, load_initial_weights
from csra.model.heads import build_head
from csra.model.zoo import HEADS, canonical_name, check_img_size, normalization_for
from csra.settings import SettingError, check_fields, from_mapping, rule, setting


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and feed it: architecture, heads and preprocessing. head 'gap' (the
    baseline) has no CSRA heads: its num_heads and lam are 0. Each field is checked when a config is made."""

    backbone: str = setting()
    num_classes: int = setting(min=1)
    num_heads: int = setting()
    lam: float = setting()
    img_size: int = setting()
    mean: tuple[float, ...] = setting(length=3)
    std: tuple[float, ...] = setting(length=3)
    # checkpoints written before the baseline existed have no head field: theirs is CSRA
    head: str = field(default="csra", metadata=rule(choices=HEADS))

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def create(cls, backbone: str, num_classes: int, num_heads: int, lam: float, img_size: int,
               head: str = "csra") -> ModelConfig:
        """A config with the official normalisation of the backbone; the official ViT spellings are accepted."""
        backbone = canonical_name(backbone)
        mean, std = normalization_for(backbone)
        if head == "gap":
            num_heads, lam = 0, 0.0
        return cls(backbone, num_classes, num_heads, lam, img_size, mean, std, head).checked()

    def checked(self) -> ModelConfig:
        """self, or a CSRAError for an input size the backbone cannot take."""
        check_img_size(self.backbone, self.img_size)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "model config") -> ModelConfig:
        """The config a checkpoint stores (where names it), checked like any setting: a CSRAError 'where: key …'
        names the first wrong field; keys that are not fields are ignored."""
        if isinstance(data, Mapping):
            names = {f.name for f in fields(cls)}
            data = {"head": "csra", **{k: v for k, v in data.items() if k in names}}
        config = from_mapping(cls, data, where)
        try:
            return replace(config, backbone=canonical_name(config.backbone)).checked()
        except SettingError as e:
            raise CSRAError(f"{where}: {e.key} {e.why}") from None


class CSRAModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.backbone = create_backbone(config.backbone)
        self.classifier = build_head(config.head, self.backbone.out_channels, config.num_classes,
                                     config.num_heads, config.lam)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes) for normalised images (B, 3, H, W)."""
        return self.classifier(self.backbone(x))


def build_model(config: ModelConfig, pretrained: str = "none") -> CSRAModel:
    """The model of config; its backbone initialised from `pretrained` ('none', 'imagenet' or a state-dict path)."""
    model = CSRAModel(config)
    load_initial_weights(model.backbone, config.backbone, pretrained)
    return model
