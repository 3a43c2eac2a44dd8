"""Typed settings: dataclasses whose fields state their allowed values, checked when one is made, and built from
plain mappings (a YAML group) with one-line errors that name the key; unknown keys get the closest known one.
A setting's dotted params key is its library name (train.lr is TrainConfig.lr, data.raw_path prepare_dataset's
raw_path), so library messages may name it that way, though the library reads no params file."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from csra.errors import CSRAError

DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"  # a device setting: auto (a GPU when there is one), cpu, cuda or cuda:N
# The roles a setting may play, declared once beside it (setting(roles=...)); every list of the settings that play
# one is derived from the fields (with_role), never written out.
RESUMABLE = "resumable"  # may change between an interrupted run and its resume: the trajectory stays the same
MACHINE = "machine"  # the machine's: left out of the recipe a checkpoint records (same params, same bytes anywhere)
UNSEARCHED = "unsearched"  # where a run goes or how fast, not what it learns: never a search dimension
LOCAL = "local"  # each machine of a study keeps its own value (a device, a path); the trials share the rest
ROLES = (RESUMABLE, MACHINE, UNSEARCHED, LOCAL)

class SettingError(CSRAError):
    """One setting has a value it may not take: key names it (dotted inside nested settings), why says what is
    allowed."""

    def __init__(self, key: str, why: str):
        super().__init__(f"{key} {why}")
        self.key, self.why = key, why


def rule(*, min: float | None = None, above: float | None = None, max: float | None = None,
         below: float | None = None, choices: tuple | None = None, pattern: str | None = None,
         keywords: tuple[str, ...] | None = None, length: int | None = None, help: str = "",
         roles: tuple[str, ...] = ()) -> dict[str, Any]:
    """Field metadata: the allowed values of a setting (bounds are inclusive, `above`/`below` exclusive) and its
    ROLES. A field typed `int | str` with keywords takes one of the keywords or a number within the bounds (`auto`
    or ≥ 0); a field typed `tuple[X, ...]` takes a list of X, of `length` items when given."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown setting role(s) {', '.join(unknown)}; the roles are {', '.join(ROLES)}")
    return {"min": min, "above": above, "max": max, "below": below, "choices": choices, "pattern": pattern,
            "keywords": keywords, "length": length, "help": help, "roles": tuple(roles)}


def setting(**kwargs: Any) -> Any:
    """A dataclass field without default whose metadata is rule(**kwargs)."""
    return dataclasses.field(metadata=rule(**kwargs))


def roles_of(cls: type, name: str) -> tuple[str, ...]:
    """The roles field `name` of the settings dataclass cls declares."""
    return tuple(cls.__dataclass_fields__[name].metadata.get("roles", ()))


def with_role(cls: type, role: str) -> tuple[str, ...]:
    """The names of the fields of the settings dataclass cls that play role, in field order."""
    return tuple(f.name for f in dataclasses.fields(cls) if role in f.metadata.get("roles", ()))


def _type_name(kind: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """value as kind (an int where a float is wanted becomes a float), else a SettingError."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind):
        if value is None:
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if value is None:
        raise SettingError(key, f"must be {_type_name(kind)}, got null")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        raise SettingError(key, f"must be {_type_name(kind)}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise SettingError(key, f"must be a finite number, got {value}")
    return value


BOUNDS = (("min", lambda v, b: v < b, "≥"), ("above", lambda v, b: v <= b, ">"),
          ("max", lambda v, b: v > b, "≤"), ("below", lambda v, b: v >= b, "<"))


def _check_rule(value: Any, meta: Mapping[str, Any], key: str) -> None:
    if value is None:
        return
    if meta.get("choices") is not None and value not in meta["choices"]:
        allowed = ", ".join(str(c) for c in meta["choices"])
        raise SettingError(key, f"must be one of {allowed}, got {value!r}")
    if meta.get("pattern") is not None and not re.fullmatch(meta["pattern"], value):
        raise SettingError(key, f"must be {meta['help'] or 'of the form ' + meta['pattern']}, got {value!r}")
    for bound, fails, words in BOUNDS:
        if meta.get(bound) is not None and fails(value, meta[bound]):
            raise SettingError(key, f"must be {words} {meta[bound]:g}, got {value}")


def _keyword_or_number(value: Any, kind: Any, meta: Mapping[str, Any], key: str) -> Any:
    """A field typed `number | str` with keywords: one of the keywords, or a number within the rule's bounds;
    anything else is one SettingError saying both ('must be auto or an integer ≥ 0, got -1')."""
    if isinstance(value, str) and value in meta["keywords"]:
        return value
    number = next(a for a in typing.get_args(kind) if a is not str)
    try:
        value = _coerce(value, number, key)
        _check_rule(value, meta, key)
    except SettingError:
        bounds = "".join(f" {words} {meta[b]:g}" for b, _, words in BOUNDS if meta.get(b) is not None)
        allowed = " or ".join([*meta["keywords"], _type_name(number) + bounds])
        raise SettingError(key, f"must be {allowed}, got {'null' if value is None else repr(value)}") from None
    return value


def _items(value: Any, kind: Any, meta: Mapping[str, Any], key: str) -> tuple:
    """A field typed `tuple[X, ...]`: a list (or tuple) of X, of the rule's length when it has one, as a tuple;
    anything else is one SettingError ('must be 3 numbers, got [0.5, 0.5]')."""
    item, length = typing.get_args(kind)[0], meta.get("length")
    wanted = f"{length if length is not None else 'a list of'} {PLURALS[item]}"
    if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
        raise SettingError(key, f"must be {wanted}, got {'null' if value is None else repr(value)}")
    try:
        return tuple(_coerce(v, item, key) for v in value)
    except SettingError:
        raise SettingError(key, f"must be {wanted}, got {value!r}") from None


def check_fields(obj: Any) -> None:
    """Check every field of a settings dataclass against its type and rule (call it in __post_init__); fix up
    ints given for floats. A wrong value is a SettingError naming the field."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.metadata.get("keywords"):
            value = _keyword_or_number(getattr(obj, f.name), hints[f.name], f.metadata, f.name)
        elif typing.get_origin(hints[f.name]) is tuple:
            value = _items(getattr(obj, f.name), hints[f.name], f.metadata, f.name)
        else:
            value = _coerce(getattr(obj, f.name), hints[f.name], f.name)
            _check_rule(value, f.metadata, f.name)
        object.__setattr__(obj, f.name, value)


def closest(name: str, known: list[str]) -> str:
    """' (did you mean X?)' for the known name closest to a misspelt one, or ''."""
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def from_mapping(cls: type, data: Any, where: str, prefix: str = "") -> Any:
    """An instance of the settings dataclass cls from a mapping, nested settings included. Unknown, missing and
    wrong keys are a CSRAError 'where: prefix.key …' (where names the file)."""
    if not isinstance(data, Mapping):
        raise CSRAError(f"{where}: {prefix.rstrip('.') or 'the file'} must be a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise CSRAError(f"{where}: unknown key {prefix}{key}{closest(str(key), names)}; "
                            f"{prefix.rstrip('.') or 'the file'} takes {', '.join(names)}")
    missing = [f"{prefix}{name}" for name in names if name not in data]
    if missing:
        raise CSRAError(f"{where}: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    values = {}
    for name in names:
        kind = hints[name]
        nested = dataclasses.is_dataclass(kind)
        values[name] = from_mapping(kind, data[name], where, f"{prefix}{name}.") if nested else data[name]
    try:
        return cls(**values)
    except SettingError as e:
        raise CSRAError(f"{where}: {prefix}{e.key} {e.why}") from None


def to_flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{'group.key': value} of a (nested) settings dataclass, in field order."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(to_flat(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out
