"""The training recipe and run settings as one validated dataclass: the paper's hyper-parameters, the loss, the
speed settings and the machine. Every field states its allowed values; a wrong one is a one-line error."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from csra.model.zoo import HEAD_COUNTS, HEADS, canonical_name, check_img_size
from csra.settings import DEVICE_PATTERN, LOCAL, MACHINE, RESUMABLE, UNSEARCHED, check_fields, setting, with_role

OPTIMIZERS = ("sgd", "adamw")
LOSSES = ("bce", "asl")


@dataclass(frozen=True)
class TrainConfig:
    """The recipe (the paper's: resnet101 at 448 px, sgd, lr 0.01 with the heads at ×10, batch 16, 30 epochs,
    warm-up 2, ×0.1 every 4 or 5 epochs; head gap is its baseline) and the run's settings. batch_size is the global
    batch: each of N processes takes batch_size / N. amp, channels_last, compile and deterministic change the speed,
    not the recipe: deterministic picks cuDNN's deterministic algorithms and full fp32 instead of autotuning and TF32
    on GPUs."""

    model: str = setting()
    pretrained: str = setting(pattern=r".+", help="imagenet, none or a path to a state dict")
    head: str = setting(choices=HEADS)  # gap: the paper's baseline, which ignores num_heads and lam
    num_heads: int = setting(choices=HEAD_COUNTS)
    lam: float = setting()
    img_size: int = setting()
    optimizer: str = setting(choices=OPTIMIZERS)
    epochs: int = setting(min=1, roles=(RESUMABLE,))
    batch_size: int = setting(min=1)
    lr: float = setting(above=0)
    classifier_lr_mult: float = setting(above=0)
    momentum: float = setting(min=0, below=1)
    weight_decay: float = setting(min=0)
    warmup_epochs: int = setting(min=0)
    step_size: int = setting(min=1)
    gamma: float = setting(above=0)
    loss: str = setting(choices=LOSSES)
    label_smoothing: float = setting(min=0, below=1)
    asl_gamma_neg: float = setting(min=0)
    asl_gamma_pos: float = setting(min=0)
    asl_clip: float = setting(min=0, below=1)
    ema_decay: float = setting(min=0, below=1)
    amp: bool = setting(roles=(UNSEARCHED,))
    channels_last: bool = setting(roles=(UNSEARCHED,))
    compile: bool = setting(roles=(UNSEARCHED, RESUMABLE))
    sync_bn: bool = setting(roles=(UNSEARCHED,))
    deterministic: bool = setting(roles=(UNSEARCHED,))
    num_workers: int = setting(min=0, roles=(RESUMABLE, MACHINE, UNSEARCHED, LOCAL))  # a stage may derive it
    device: str = setting(pattern=DEVICE_PATTERN, help="auto, cpu, cuda or cuda:N",
                          roles=(RESUMABLE, UNSEARCHED, LOCAL))
    seed: int = setting(min=0)
    tune_thresholds: bool = setting()

    def __post_init__(self) -> None:
        check_fields(self)
        object.__setattr__(self, "model", canonical_name(self.model))
        check_img_size(self.model, self.img_size)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def recipe(self) -> dict:
        """The settings a checkpoint records: all but MACHINE_SETTINGS."""
        return {k: v for k, v in asdict(self).items() if k not in MACHINE_SETTINGS}


RESUMABLE_CHANGES = with_role(TrainConfig, RESUMABLE)  # a resume may change them: not part of its fingerprint
MACHINE_SETTINGS = with_role(TrainConfig, MACHINE)
