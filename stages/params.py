"""The params file's schema, one settings dataclass per group, checked whole before a stage does any work:
unknown keys (with the closest known one), types, ranges and nulls are one-line errors naming the key. Command-line
options override single keys first; MLflow gets the flattened values."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from csra.data.datasets import DATASETS, SELECTIONS
from csra.data.synthetic import SyntheticSpec
from csra.errors import CSRAError
from csra.fileio import read_text
from csra.settings import check_fields, from_mapping, setting, to_flat
from csra.train.config import DEVICE_PATTERN, TrainConfig
from stages.common import DEFAULT_PARAMS_PATH

BAD_IMAGES = ("skip", "fail")  # a missing or unreadable training image is left out, or ends the run
RESUME = ("auto", "never")
THRESHOLDS = ("global", "per_class")
REGISTER = ("always", "better", "never")  # register a new model version: on every export, when it beats the champion
# evaluate's metrics (metrics.json, MLflow), any of which can elect the champion; all are higher-is-better
METRICS = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "CP_top3", "CR_top3", "CF1_top3", "OP_top3", "OR_top3",
           "OF1_top3")


class Group:
    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class DataParams(Group):
    dataset: str = setting(choices=tuple(DATASETS))
    raw_path: str | None = setting()
    prepared_dir: str = setting()
    bad_images: str = setting(choices=BAD_IMAGES)
    selection: str = setting(choices=SELECTIONS)
    val_fraction: float = setting(above=0, below=1)
    val_seed: int = setting(min=0)


@dataclass(frozen=True)
class PrepareParams(Group):
    synthetic: SyntheticSpec = setting()


def workers_setting() -> Any:
    """num_workers: 'auto' (the stage picks from the machine, see csra.data.loading.loader_workers) or a number ≥ 0."""
    return setting(min=0, keywords=("auto",))


@dataclass(frozen=True)
class TrainParams(TrainConfig):
    """The recipe and run settings (TrainConfig) plus what only the stage uses; num_workers may be 'auto'."""

    num_workers: int | str = workers_setting()
    recipe: str = setting(pattern=r".+", help="a recipe name")
    out_dir: str = setting()
    resume: str = setting(choices=RESUME)

    def config(self, num_workers: int) -> TrainConfig:
        """The library's settings, with num_workers as a number (the user's, or what 'auto' gave)."""
        values = {name: getattr(self, name) for name in TrainConfig.names()}
        return TrainConfig(**{**values, "num_workers": num_workers})


@dataclass(frozen=True)
class EvaluateParams(Group):
    out_dir: str = setting()
    threshold: float = setting(min=0, max=1)
    batch_size: int = setting(min=1)
    num_workers: int | str = workers_setting()
    device: str = setting(pattern=DEVICE_PATTERN, help="auto, cpu, cuda or cuda:N")
    deterministic: bool = setting()


@dataclass(frozen=True)
class DemoParams(Group):
    images: str = setting()
    out_dir: str = setting()
    thresholds: str = setting(choices=THRESHOLDS)


@dataclass(frozen=True)
class ExportParams(Group):
    out_dir: str = setting()
    onnx: bool = setting()
    registered_model: str = setting(pattern=r"[A-Za-z0-9_.\-]+", help="a model name (letters, digits, _ . -)")
    register: str = setting(choices=REGISTER)
    champion_metric: str = setting(choices=METRICS)
    seed: int = setting(min=0)


@dataclass(frozen=True)
class TrackingParams(Group):
    experiment: str = setting(pattern=r".+", help="an experiment name")
    system_metrics: float = setting(min=0)  # seconds between samples of CPU, memory (and GPU) during training; 0: off


@dataclass(frozen=True)
class Params:
    data: DataParams
    prepare: PrepareParams
    train: TrainParams
    evaluate: EvaluateParams
    demo: DemoParams
    export: ExportParams
    tracking: TrackingParams

    def flat(self, groups: list[str] | None = None) -> dict[str, Any]:
        """{'train.lam': 0.1, …} of the given groups (default: all), as MLflow params."""
        names = groups or [f.name for f in fields(self)]
        return {k: v for name in names for k, v in to_flat(getattr(self, name), f"{name}.").items()}


def read_params_file(path: Path) -> dict:
    if not path.is_file():
        raise CSRAError(f"{path}: params file not found (run from the repository root or pass --params)")
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        raise CSRAError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise CSRAError(f"{path}: expected a mapping of parameter groups")
    return data


def load_params(path: str | Path = DEFAULT_PARAMS_PATH, **overrides: Any) -> Params:
    """The checked params of the file at path, after overrides: dotted keys written with '__' for '.'
    (train__lam=0.3), as the CLI options give them; None means not given."""
    path = Path(path)
    data = read_params_file(path)
    for name, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, last = name.split("__")
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node
        if isinstance(node, dict):
            node[last] = value
    return from_mapping(Params, data, str(path))
