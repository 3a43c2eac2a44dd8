"""params.yaml as the composition of conf/: DVC's Hydra composition (the one `dvc exp run` runs) written by
`csra params`, and the check every stage makes before any work, so that an edit of conf/ is never ignored silently."""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from dvc.utils.hydra import compose_and_dump

from csra.errors import CSRAError, first_line
from csra.fileio import disk_errors, read_text, write_text

CONF, CONFIG = "conf", "config"  # DVC's defaults for hydra.config_dir and hydra.config_name
PARAMS = "params.yaml"  # the file DVC composes conf/ into
UNDER_EXPERIMENT = "DVC_EXP_NAME"  # set by `dvc exp run` for its stages: it has just composed params.yaml itself
FIX = "run `csra params` to write it from conf/ (dvc exp run composes it itself)"
SHOWN = 3  # differing keys named in the one line


def composed(root: Path) -> str:
    """The text of root's conf/ composed as `dvc exp run` composes it (without overrides): composed once per process
    for the files conf/ holds (a search checks every value of its space against params.yaml, each trial again)."""
    conf = (root / CONF).resolve()
    state = hashlib.md5(b"".join(bytes(p.relative_to(conf)) + b"\0" + p.read_bytes()
                                 for p in sorted(conf.rglob("*.yaml")))).hexdigest()
    return _composed(root.resolve(), state)


@functools.lru_cache(maxsize=4)
def _composed(root: Path, state: str) -> str:
    """composed(root) for conf/'s files of digest state (the cache's key: an edit of conf/ composes afresh)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / PARAMS
        try:
            compose_and_dump(out, str((root / CONF).resolve()), None, CONFIG, str(root.resolve()), [])
        except Exception as e:  # Hydra's own errors: a missing recipe file, a bad default, YAML errors
            raise CSRAError(f"{root / CONF}: cannot compose: {first_line(e)}") from None
        return out.read_text(encoding="utf-8")


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def differences(written: str, wanted: str) -> list[tuple[str, Any, Any]]:
    """(key, written value, wanted value) of every key whose value differs between two params texts; a key only
    in one of them has the value '(none)' in the other."""
    a, b = _flat(yaml.safe_load(written) or {}), _flat(yaml.safe_load(wanted) or {})
    return [(key, a.get(key, "(none)"), b.get(key, "(none)")) for key in [*a, *(k for k in b if k not in a)]
            if key not in a or key not in b or a[key] != b[key]]


def governed(params_file: Path) -> Path | None:
    """The project root whose conf/ params_file is composed from, or None: the file is not a project's
    params.yaml beside a conf/config.yaml (a file of the user's own, a test's)."""
    root = params_file.resolve().parent
    if params_file.name != PARAMS or not (root / CONF / f"{CONFIG}.yaml").is_file():
        return None
    return root


def check_composed(params_file: Path) -> None:
    """Refuse, in one line naming the differing keys, a project's params.yaml that is not the composition of its
    conf/ — unless a `dvc exp run` composed it (with its -S overrides) for the stage that is running."""
    root = governed(params_file)
    if root is None or os.environ.get(UNDER_EXPERIMENT) or not params_file.is_file():
        return
    diff = differences(read_text(params_file), composed(root))
    if diff:
        named = "; ".join(f"{key}: {here} here, {there} in conf/" for key, here, there in diff[:SHOWN])
        more = f" and {len(diff) - SHOWN} more" if len(diff) > SHOWN else ""
        raise CSRAError(f"{params_file}: not the composition of conf/ ({named}{more}): {FIX}")


def write_composed(params_file: Path) -> list[str]:
    """Write the composition of conf/ into params_file whole; 'key: old → new' for each value it changed (none:
    it was the composition already)."""
    root = governed(params_file)
    if root is None:
        raise CSRAError(f"{params_file}: no {CONF}/{CONFIG}.yaml beside it to compose from")
    text = composed(root)
    before = read_text(params_file) if params_file.is_file() else ""
    if before != text:
        with disk_errors(params_file):
            write_text(params_file, text)
    return [f"{key}: {old} → {new}" for key, old, new in differences(before, text)] if before else ["written"]
