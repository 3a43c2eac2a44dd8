"""The model zoo's names, each entry's preprocessing spec (official input size, mean and std) and the paper's head
counts and temperatures, known without importing torch, so that settings are checked before anything heavy loads."""

from __future__ import annotations

from dataclasses import dataclass

from csra.errors import CSRAError
from csra.settings import SettingError

# The zoo, one entry per backbone: its name and family (csra/model/backbones.py holds each name's torchvision
# builder and each family's wrapper); the official ViTs: patch 16, trained at 224 px (a 14 × 14 grid).
BACKBONES: dict[str, str] = {
    "resnet18": "resnet", "resnet34": "resnet", "resnet50": "resnet", "resnet101": "resnet", "resnet152": "resnet",
    "vit_b16_224": "vit", "vit_l16_224": "vit",
}
ALIASES = {"vit_B16_224": "vit_b16_224", "vit_L16_224": "vit_l16_224"}  # the official code's spellings


@dataclass(frozen=True)
class Family:
    """What a backbone family's preprocessing is (the official code's input size and normalisation) and the
    multiple its input sides must be (1: any side)."""

    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    side_multiple: int = 1


# ResNets see pixels in [0, 1] unchanged at 448 px, ViTs (x - 0.5) / 0.5 at 224 px, sides a multiple of the patch.
FAMILIES: dict[str, Family] = {
    "resnet": Family(448, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "vit": Family(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), side_multiple=16),
}
MIN_IMG_SIZE = 32
# Temperatures per head count, as in the paper; T = 99 stands for max pooling (T → ∞).
TEMPERATURES: dict[int, list[int]] = {
    1: [1],
    2: [1, 99],
    4: [1, 2, 4, 99],
    6: [1, 2, 3, 4, 5, 99],
    8: [1, 2, 3, 4, 5, 6, 7, 99],
}
MAX_POOL_TEMPERATURE = 99
HEAD_COUNTS = tuple(TEMPERATURES)  # the paper's head counts: 1, 2, 4, 6, 8
HEADS = ("csra", "gap")  # the paper's head, and its baseline: global average pooling + a linear classifier


def model_names() -> list[str]:
    return list(BACKBONES)


def canonical_name(name: str) -> str:
    """Our model name for name (the official ViT spellings are accepted); unknown names are a CSRAError."""
    name = ALIASES.get(name, name)
    if name not in BACKBONES:
        raise SettingError("model", f"must be one of {', '.join(model_names())}, got {name!r}")
    return name


def family(name: str) -> str:
    """The backbone's family ('resnet', 'vit')."""
    return BACKBONES[canonical_name(name)]


def family_of(name: str) -> Family:
    """The backbone's family entry; a family the zoo does not declare is a CSRAError."""
    kind = family(name)
    if kind not in FAMILIES:
        raise CSRAError(f"backbone {canonical_name(name)}: family {kind!r} is not in the zoo's families "
                        f"({', '.join(FAMILIES)}; csra/model/zoo.py)")
    return FAMILIES[kind]


def default_img_size(name: str) -> int:
    """The official input size for this backbone's family (448 for ResNets, 224 for ViTs)."""
    return family_of(name).img_size


def normalization_for(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the official code uses for this backbone's family."""
    entry = family_of(name)
    return entry.mean, entry.std


def check_img_size(name: str, img_size: int) -> None:
    """A SettingError for an input size the backbone cannot take."""
    if img_size < MIN_IMG_SIZE:
        raise SettingError("img_size", f"must be ≥ {MIN_IMG_SIZE}, got {img_size}")
    multiple = family_of(name).side_multiple
    if img_size % multiple:
        raise SettingError("img_size", f"of {canonical_name(name)} must be a multiple of {multiple}, got {img_size}")
