"""CSRAModel = backbone + CSRA heads, built from a ModelConfig that also carries the preprocessing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from csra.errors import CSRAError
from csra.model.backbones import create_backbone, load_initial_weights
from csra.model.heads import MultiHeadCSRA
from csra.model.zoo import canonical_name, check_img_size, normalization_for


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and feed it: architecture, heads and preprocessing."""

    backbone: str
    num_classes: int
    num_heads: int
    lam: float
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def create(cls, backbone: str, num_classes: int, num_heads: int, lam: float, img_size: int) -> ModelConfig:
        """A config with the official normalisation of the backbone; the official ViT spellings are accepted."""
        backbone = canonical_name(backbone)
        mean, std = normalization_for(backbone)
        return cls(backbone, num_classes, num_heads, float(lam), img_size, mean, std).checked()

    def checked(self) -> ModelConfig:
        """self, or a SettingError (a CSRAError) for an input size the backbone cannot take."""
        check_img_size(self.backbone, self.img_size)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        missing = names - set(data)
        if missing:
            raise CSRAError(f"model config lacks {', '.join(sorted(missing))}")
        values = {k: data[k] for k in names}
        values["mean"], values["std"] = tuple(values["mean"]), tuple(values["std"])
        return cls(**values)


class CSRAModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.backbone = create_backbone(config.backbone)
        self.classifier = MultiHeadCSRA(
            self.backbone.out_channels, config.num_classes, config.num_heads, config.lam
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes) for normalised images (B, 3, H, W)."""
        return self.classifier(self.backbone(x))


def build_model(config: ModelConfig, pretrained: str = "none") -> CSRAModel:
    """The model of config; its backbone initialised from `pretrained` ('none', 'imagenet' or a state-dict path)."""
    model = CSRAModel(config)
    load_initial_weights(model.backbone, config.backbone, pretrained)
    return model
