"""Reading params.yaml: typed access by dotted key, overrides from CLI options, flattening for MLflow."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from csra.errors import CSRAError

DEFAULT_PARAMS = "params.yaml"


class Params:
    """The parsed params file; `get` checks each value's type and names the file and key when it is wrong."""

    def __init__(self, data: dict, source: str):
        self.data = data
        self.source = source

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PARAMS) -> Params:
        path = Path(path)
        if not path.is_file():
            raise CSRAError(f"{path}: params file not found (run from the repository root or pass --params)")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise CSRAError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise CSRAError(f"{path}: expected a mapping of parameter groups")
        return cls(data, str(path))

    def get(self, key: str, kind: type) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise CSRAError(f"{self.source}: missing key {key}")
            node = node[part]
        if kind is float and isinstance(node, int) and not isinstance(node, bool):
            node = float(node)
        if kind is str and node is None:
            return None
        if not isinstance(node, kind) or (kind is int and isinstance(node, bool)):
            raise CSRAError(f"{self.source}: {key} must be {kind.__name__}, got {node!r}")
        return node

    def override(self, **values: Any) -> Params:
        """Set dotted keys (given with '__' for '.') whose value is not None, as CLI options do."""
        for name, value in values.items():
            if value is None:
                continue
            node = self.data
            *parents, last = name.split("__")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        return self

    def apply_preset(self, group: str, presets: str, auto: str) -> str:
        """Fill the keys of `group` that are null (or absent) from `presets.<group.preset>`; preset `auto` means
        the value of the key `auto` (the dataset). Returns the preset's name. Keys set in the group win."""
        name = self.get(f"{group}.preset", str)
        if name == "auto":
            name = self.get(auto, str)
        table = self.data.get(presets)
        if not isinstance(table, dict) or not isinstance(table.get(name), dict):
            known = ", ".join(table) if isinstance(table, dict) else "none"
            raise CSRAError(f"{self.source}: {group}.preset {name!r} has no entry under {presets} (known: {known})")
        target = self.data.setdefault(group, {})
        for key, value in table[name].items():
            if target.get(key) is None:
                target[key] = value
        return name

    def flat(self, groups: list[str]) -> dict[str, Any]:
        """{'train.lam': 0.1, …} for the given top-level groups, as MLflow params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, node: Any) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(f"{prefix}.{k}", v)
            else:
                out[prefix] = node

        for group in groups:
            walk(group, self.data.get(group, {}))
        return out


_KINDS = {"int": int, "float": float, "str": str, "bool": bool}


def config_from(params: Params, cls: type, group: str) -> Any:
    """Build a dataclass from the params group whose keys are its field names, checking each type."""
    kinds = {f.name: f.type if isinstance(f.type, type) else _KINDS[f.type] for f in fields(cls)}
    return cls(**{name: params.get(f"{group}.{name}", kind) for name, kind in kinds.items()})
