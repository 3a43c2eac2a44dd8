"""The model zoo's names, each entry's preprocessing spec (official input size, mean and std) and the paper's head
counts and temperatures, known without importing torch, so that settings are checked before anything heavy loads."""

from __future__ import annotations

from csra.settings import SettingError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
VITS = ("vit_b16_224", "vit_l16_224")  # the official ViTs: patch 16, trained at 224 px (a 14 × 14 grid)
ALIASES = {"vit_B16_224": "vit_b16_224", "vit_L16_224": "vit_l16_224"}  # the official code's spellings
# Input normalisation of the official code: ResNets see pixels in [0, 1] unchanged, ViTs (x - 0.5) / 0.5.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "resnet": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
DEFAULT_IMG_SIZE = {"resnet": 448, "vit": 224}  # the official input sizes
VIT_PATCH = 16
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
    return [*RESNETS, *VITS]


def canonical_name(name: str) -> str:
    """Our model name for name (the official ViT spellings are accepted); unknown names are a CSRAError."""
    name = ALIASES.get(name, name)
    if name not in RESNETS and name not in VITS:
        raise SettingError("model", f"must be one of {', '.join(model_names())}, got {name!r}")
    return name


def family(name: str) -> str:
    """'resnet' or 'vit'."""
    return "vit" if canonical_name(name) in VITS else "resnet"


def default_img_size(name: str) -> int:
    """The official input size for this backbone family (448 for ResNets, 224 for ViTs)."""
    return DEFAULT_IMG_SIZE[family(name)]


def normalization_for(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the official code uses for this backbone family."""
    return NORMALIZATION[family(name)]


def check_img_size(name: str, img_size: int) -> None:
    """A SettingError for an input size the backbone cannot take."""
    if img_size < MIN_IMG_SIZE:
        raise SettingError("img_size", f"must be ≥ {MIN_IMG_SIZE}, got {img_size}")
    if family(name) == "vit" and img_size % VIT_PATCH:
        raise SettingError("img_size", f"of {canonical_name(name)} must be a multiple of {VIT_PATCH}, got {img_size}")

