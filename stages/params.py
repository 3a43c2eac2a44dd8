"""The params file, read by each stage for the groups it uses and nothing else: a stage's schema (a dataclass whose
fields are groups) says which groups, or which keys of a group, it reads; those are checked whole before the stage
does any work — unknown keys (with the closest known one), types, ranges and nulls are one-line errors naming the
key. The schema is also what dvc.yaml declares as the stage's params (`declared_params`), minus UNTRACKED groups:
what the stage reads but changes none of its outputs (where runs are recorded)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from csra.data.datasets import DATASETS, SELECTIONS
from csra.errors import CSRAError, first_line
from csra.fileio import read_text
from csra.settings import LOCAL, check_fields, closest, from_mapping, setting, to_flat
from stages.common import DEFAULT_PARAMS_PATH
from stages.composition import check_composed

# Every group params.yaml holds; a stage checks its own groups, and that the file holds no other.
GROUPS = ("data", "prepare", "train", "evaluate", "demo", "export", "tracking")
# Read by the stages but no dependency of any: where and how runs are recorded changes no output.
UNTRACKED = ("tracking",)
BAD_IMAGES = ("skip", "fail")  # a missing or unreadable training image is left out, or ends the run

Schema = TypeVar("Schema", bound="StageParams")


class Group:
    """A params group. A PARTIAL group is a view: the schema reads only its keys of the file's group (the others
    are other stages' business), so the stage depends on those keys alone; OF, the whole group, names the keys the
    file may hold there."""

    PARTIAL: ClassVar[bool] = False
    OF: ClassVar[type | None] = None

    def __post_init__(self) -> None:
        check_fields(self)


def same_as(group: type, key: str) -> Any:
    """A view's field with the rule of the whole group's key."""
    return dataclasses.field(metadata=group.__dataclass_fields__[key].metadata)


@dataclass(frozen=True)
class DataParams(Group):
    """The data group whole: which dataset, where it is, and how training reads it."""

    dataset: str = setting(choices=tuple(DATASETS))
    raw_path: str | None = setting()
    prepared_dir: str = setting(roles=(LOCAL,))
    bad_images: str = setting(choices=BAD_IMAGES)
    selection: str = setting(choices=SELECTIONS)
    val_fraction: float = setting(above=0, below=1)
    val_seed: int = setting(min=0)


@dataclass(frozen=True)
class RawData(Group):
    """What prepare reads of `data`: the dataset, its raw folder and the prepared folder it writes."""

    PARTIAL: ClassVar[bool] = True
    OF: ClassVar[type | None] = DataParams
    dataset: str = same_as(DataParams, "dataset")
    raw_path: str | None = same_as(DataParams, "raw_path")
    prepared_dir: str = same_as(DataParams, "prepared_dir")


@dataclass(frozen=True)
class TrainingData(Group):
    """What train reads of `data`: the prepared dataset and how to read it and hold out the selection images."""

    PARTIAL: ClassVar[bool] = True
    OF: ClassVar[type | None] = DataParams
    dataset: str = same_as(DataParams, "dataset")
    prepared_dir: str = same_as(DataParams, "prepared_dir")
    bad_images: str = same_as(DataParams, "bad_images")
    selection: str = same_as(DataParams, "selection")
    val_fraction: float = same_as(DataParams, "val_fraction")
    val_seed: int = same_as(DataParams, "val_seed")


@dataclass(frozen=True)
class DatasetParams(Group):
    """What the stages after train read of `data`: the dataset's name and prepared folder (class names, the test
    file)."""

    PARTIAL: ClassVar[bool] = True
    OF: ClassVar[type | None] = DataParams
    dataset: str = same_as(DataParams, "dataset")
    prepared_dir: str = same_as(DataParams, "prepared_dir")


@dataclass(frozen=True)
class TrainOutput(Group):
    """What the stages after train read of `train`: where it writes best.pt (train itself checks the rest)."""

    PARTIAL: ClassVar[bool] = True
    out_dir: str = setting()


@dataclass(frozen=True)
class TrackingParams(Group):
    experiment: str = setting(pattern=r".+", help="an experiment name")
    system_metrics: float = setting(min=0)  # seconds between samples of CPU, memory (and GPU) during training; 0: off
    sync_wait: float = setting(min=0)  # seconds the end of a training waits for a store that does not answer


class StageParams:
    """A stage's schema: a frozen dataclass whose fields are the groups it reads."""

    @classmethod
    def groups(cls) -> dict[str, type[Group]]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def declared(cls) -> list[str]:
        """The stage's `params:` list in dvc.yaml: whole groups by name, PARTIAL ones key by key, UNTRACKED left
        out."""
        declared: list[str] = []
        for name, kind in cls.groups().items():
            if name not in UNTRACKED:
                declared += [f"{name}.{key}" for key in _names(kind)] if _partial(kind) else [name]
        return declared

    def flat(self) -> dict[str, Any]:
        """{'train.lam': 0.1, …}: every value the stage read, as MLflow params."""
        return to_flat(self)


def workers_setting(roles: tuple[str, ...] = ()) -> Any:
    """num_workers: 'auto' (the stage picks from the machine, see csra.data.loading.loader_workers) or a number ≥ 0;
    roles: the ROLES (csra.settings) of the library setting it stands for."""
    return setting(min=0, keywords=("auto",), roles=roles)


def read_params_file(path: Path) -> dict:
    if not path.is_file():
        raise CSRAError(f"{path}: params file not found (run from the repository root or pass --params)")
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        raise CSRAError(f"{path}: not valid YAML ({first_line(e)})") from None
    if not isinstance(data, dict):
        raise CSRAError(f"{path}: expected a mapping of parameter groups")
    return data


def _override(data: dict, overrides: Mapping[str, object]) -> None:
    """Set dotted keys ({'train.lam': 0.3}), as the command-line options give them; None: not given."""
    for name, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, last = name.split(".")
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node
        if isinstance(node, dict):
            node[last] = value


def load_params(schema: type[Schema], path: str | Path = DEFAULT_PARAMS_PATH,
                overrides: Mapping[str, object] | None = None) -> Schema:
    """The groups schema reads from the params file at path, after overrides, checked."""
    path = Path(path)
    check_composed(path)
    data = read_params_file(path)
    _override(data, overrides or {})
    for name in data:
        if name not in GROUPS:
            raise CSRAError(f"{path}: unknown key {name}{closest(str(name), list(GROUPS))}; the file takes "
                            f"{', '.join(GROUPS)}")
    picked: dict[str, Any] = {}
    for name, kind in schema.groups().items():
        if name in data:
            value = data[name]
            if _partial(kind) and isinstance(value, dict):
                whole = _names(kind.OF) if kind.OF else list(value)
                for key in value:
                    if key not in whole:
                        raise CSRAError(f"{path}: unknown key {name}.{key}{closest(str(key), whole)}; {name} takes "
                                        f"{', '.join(whole)}")
                value = {key: value[key] for key in _names(kind) if key in value}
            picked[name] = value
    return from_mapping(schema, picked, str(path))


def _names(kind: type) -> list[str]:
    return [f.name for f in dataclasses.fields(kind)]


def _partial(kind: type) -> bool:
    return bool(getattr(kind, "PARTIAL", False))
