"""CSRAModel = backbone + classifier (CSRA heads, or the paper's GAP baseline), built from a ModelConfig that also
carries the preprocessing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from csra.errors import CSRAError
from csra.model.backbones import create_backbone, load_initial_weights
from csra.model.heads import build_head
from csra.model.zoo import HEADS, canonical_name, check_img_size, normalization_for


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and feed it: architecture, heads and preprocessing. head 'gap' (the
    baseline) has no CSRA heads: its num_heads and lam are 0."""

    backbone: str
    num_classes: int
    num_heads: int
    lam: float
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    head: str = "csra"  # checkpoints written before the baseline existed have no head field: theirs is CSRA

    @classmethod
    def create(cls, backbone: str, num_classes: int, num_heads: int, lam: float, img_size: int,
               head: str = "csra") -> ModelConfig:
        """A config with the official normalisation of the backbone; the official ViT spellings are accepted."""
        backbone = canonical_name(backbone)
        mean, std = normalization_for(backbone)
        if head == "gap":
            num_heads, lam = 0, 0.0
        return cls(backbone, num_classes, num_heads, float(lam), img_size, mean, std, head).checked()

    def checked(self) -> ModelConfig:
        """self, or a CSRAError for a head we do not know or an input size the backbone cannot take."""
        if self.head not in HEADS:
            raise CSRAError(f"model config field 'head' must be one of {', '.join(HEADS)}, got {self.head!r}")
        check_img_size(self.backbone, self.img_size)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """The config a checkpoint stores, each field's kind checked (a CSRAError names the first wrong one)."""
        data = {"head": "csra", **data}
        names = {f.name for f in fields(cls)}
        missing = names - set(data)
        if missing:
            raise CSRAError(f"model config lacks {', '.join(sorted(missing))}")
        values = {k: data[k] for k in names}
        kinds = {"backbone": str, "num_classes": int, "num_heads": int, "img_size": int, "lam": (int, float),
                 "head": str}
        for name, kind in kinds.items():
            if not isinstance(values[name], kind) or isinstance(values[name], bool):
                raise CSRAError(f"model config field {name!r} is {values[name]!r}, of the wrong kind")
        for name in ("mean", "std"):
            stats = values[name]
            if not isinstance(stats, (list, tuple)) or len(stats) != 3 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in stats):
                raise CSRAError(f"model config field {name!r} must be 3 numbers, got {stats!r}")
            values[name] = tuple(float(v) for v in stats)
        if values["num_classes"] < 1:
            raise CSRAError(f"model config field 'num_classes' must be ≥ 1, got {values['num_classes']}")
        values["backbone"], values["lam"] = canonical_name(values["backbone"]), float(values["lam"])
        return cls(**values).checked()


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
