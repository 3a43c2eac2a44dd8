"""CSRAModel = backbone + CSRA heads, built from a ModelConfig that also carries the preprocessing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from csra.backbones import canonical_name, create_backbone, load_initial_weights
from csra.errors import CSRAError
from csra.heads import MultiHeadCSRA

# Input normalisation of the official code: ResNets see pixels in [0, 1] unchanged, ViTs (x - 0.5) / 0.5.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "resnet": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
DEFAULT_IMG_SIZE = {"resnet": 448, "vit": 224}  # the official input sizes
VIT_PATCH = 16


def default_img_size(backbone: str) -> int:
    """The official input size for this backbone family (448 for ResNets, 224 for ViTs)."""
    return DEFAULT_IMG_SIZE["vit" if canonical_name(backbone).startswith("vit") else "resnet"]


def normalization_for(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the official code uses for this backbone family."""
    for prefix, value in NORMALIZATION.items():
        if backbone.startswith(prefix):
            return value
    raise CSRAError(f"unknown model {backbone!r}: no input normalisation known for it")


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
        """self, or a CSRAError for an input size the backbone cannot take."""
        if self.img_size < 32:
            raise CSRAError(f"img_size must be at least 32, got {self.img_size}")
        if self.backbone.startswith("vit") and self.img_size % VIT_PATCH:
            raise CSRAError(f"img_size of {self.backbone} must be a multiple of {VIT_PATCH}, got {self.img_size}")
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
