"""Backbones: torchvision ResNets and ViTs cut to a feature map (B, C, H, W), and their initial-weight sources."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from csra.errors import CSRAError
from csra.model.weights import as_state_dict, backbone_init_state, load_strict, load_weights_only
from csra.model.zoo import canonical_name, family

# Each zoo entry's torchvision constructor and ImageNet weights entry.
BUILDERS: dict[str, tuple[Callable[..., nn.Module], models.WeightsEnum]] = {
    "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (models.resnet34, models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1),
    "resnet101": (models.resnet101, models.ResNet101_Weights.IMAGENET1K_V1),
    "resnet152": (models.resnet152, models.ResNet152_Weights.IMAGENET1K_V1),
    "vit_b16_224": (models.vit_b_16, models.ViT_B_16_Weights.IMAGENET1K_V1),
    "vit_l16_224": (models.vit_l_16, models.ViT_L_16_Weights.IMAGENET1K_V1),
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


def resize_pos_embedding(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(1, 1 + h·w, D) position embedding (class token first, square trained grid) → (1, 1 + grid[0]·grid[1], D);
    the patch part is interpolated bicubically, the class token's entry kept."""
    cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
    side = int(round(patch_pos.shape[1] ** 0.5))
    if (side, side) == tuple(grid):
        return pos
    dim = patch_pos.shape[2]
    patch_pos = patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([cls_pos, patch_pos.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], dim)], dim=1)


class ViTBackbone(nn.Module):
    """A torchvision VisionTransformer → all patch tokens after the final norm, class token dropped, as (B, D, h, w).

    Any input whose sides are multiples of the patch size works: the position embedding (kept at the trained
    grid, so checkpoints stay loadable) is interpolated to the input's grid.
    """

    def __init__(self, net: models.VisionTransformer):
        super().__init__()
        self.patch_size: int = net.patch_size
        self.conv_proj, self.class_token, self.encoder = net.conv_proj, net.class_token, net.encoder
        self.out_channels: int = net.hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x)
        b, d, h, w = x.shape
        tokens = torch.cat([self.class_token.expand(b, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        tokens = tokens + resize_pos_embedding(self.encoder.pos_embedding, (h, w))
        tokens = self.encoder.ln(self.encoder.layers(self.encoder.dropout(tokens)))
        return tokens[:, 1:].transpose(1, 2).reshape(b, d, h, w)


# Each zoo family's wrapper, which cuts its torchvision network to a feature map.
WRAPPERS: dict[str, type[ResNetBackbone] | type[ViTBackbone]] = {"resnet": ResNetBackbone, "vit": ViTBackbone}


def _builder(name: str) -> tuple[Callable[..., nn.Module], models.WeightsEnum]:
    """The torchvision constructor and ImageNet weights of zoo entry name; one the zoo names without them is a
    CSRAError."""
    name = canonical_name(name)
    if name not in BUILDERS:
        raise CSRAError(f"backbone {name}: no torchvision builder in csra/model/backbones.py BUILDERS")
    return BUILDERS[name]


def create_backbone(name: str) -> ResNetBackbone | ViTBackbone:
    """Build a backbone by name with random initial weights (see load_initial_weights for pretrained ones)."""
    name = canonical_name(name)
    if family(name) not in WRAPPERS:
        raise CSRAError(f"backbone {name}: family {family(name)!r} has no wrapper in csra/model/backbones.py "
                        f"WRAPPERS ({', '.join(WRAPPERS)})")
    return WRAPPERS[family(name)](_builder(name)[0](weights=None))


def imagenet_weights(name: str) -> models.WeightsEnum:
    """torchvision's ImageNet weights entry of this backbone."""
    return _builder(name)[1]


def imagenet_weights_file(name: str) -> Path:
    """Where torchvision's weights API caches the ImageNet weights of this backbone (under TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(imagenet_weights(name).url).name


def initial_weights_file(name: str, pretrained: str) -> Path | None:
    """The file that `pretrained` names for backbone `name` ('imagenet': torchvision's weights in the TORCH_HOME
    cache; 'none': None; else a path), which must exist: a run checks it before it starts any work or record."""
    if pretrained == "none":
        return None
    if pretrained == "imagenet":
        path = imagenet_weights_file(name)
        if not path.is_file():
            raise CSRAError(f"ImageNet weights of {name} not found: put {path.name} (from {imagenet_weights(name).url})"
                            f" in {path.parent} (set TORCH_HOME to use another cache folder)")
        return path
    path = Path(pretrained)
    if not path.is_file():
        raise CSRAError(f"{path}: initial weights file not found (train.pretrained: imagenet, none or a path)")
    return path


def load_initial_weights(backbone: nn.Module, name: str, pretrained: str) -> None:
    """Fill backbone from `pretrained`: 'imagenet' (torchvision's weights, from the TORCH_HOME cache), 'none', or a
    path to a ResNet (torchvision / CutMix, maybe `module.`-prefixed) or timm/JAX ViT state dict. The file must fit
    exactly (classifier layers dropped)."""
    path = initial_weights_file(name, pretrained)
    if path is None:
        return
    state = backbone_init_state(as_state_dict(load_weights_only(path, "weights file"), path))
    if any(key.startswith("classifier.multi_head.") for key in state):
        raise CSRAError(f"{path}: a whole CSRA model (it has CSRA heads), not backbone weights; train.pretrained "
                        "takes backbone weights, evaluate, demo and export take whole models")
    if isinstance(backbone, ViTBackbone) and "encoder.pos_embedding" in state:
        pos = state["encoder.pos_embedding"]
        side = int(round((backbone.encoder.pos_embedding.shape[1] - 1) ** 0.5))
        state["encoder.pos_embedding"] = resize_pos_embedding(pos, (side, side))
    load_strict(backbone, state, str(path))
