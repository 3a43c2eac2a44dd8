"""What a run was made from, as DVC names it: the hash of the prepared data folder (DVC's own, from dvc.lock under
a DVC stage, else computed the way DVC computes it) and the number of items in each annotation file."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from csra.data.datasets import DatasetEntry
from csra.fileio import file_md5

LOCK = "dvc.lock"


@dataclass(frozen=True)
class DataVersion:
    """A dataset as a run input: its name, where it lives, DVC's hash of it, and items per annotation file."""

    name: str
    source: str
    digest: str
    items: dict[str, int]


def dvc_md5(path: Path) -> str:
    """DVC 3's md5 of a file (of its bytes), or of a folder: the md5 of the JSON list of its files' {md5, relpath},
    sorted by relpath, with '.dir' appended — the value dvc.lock records (no .dvcignore patterns applied)."""
    if path.is_file():
        return file_md5(path)
    entries = [{"md5": file_md5(f), "relpath": f.relative_to(path).as_posix()}
               for f in path.rglob("*") if f.is_file()]
    listing = json.dumps(sorted(entries, key=lambda e: e["relpath"]), sort_keys=True)
    return hashlib.md5(listing.encode("utf-8")).hexdigest() + ".dir"


def locked_md5(path: Path, lock: Path = Path(LOCK)) -> str | None:
    """The md5 that dvc.lock records for path as a stage's output, or None."""
    try:
        stages = yaml.safe_load(lock.read_text(encoding="utf-8")).get("stages", {})
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    wanted = os.path.normpath(path)
    for stage in stages.values():
        for out in stage.get("outs", []) if isinstance(stage, dict) else []:
            if isinstance(out, dict) and os.path.normpath(str(out.get("path"))) == wanted and out.get("md5"):
                return str(out["md5"])
    return None


def data_digest(path: Path) -> str:
    """DVC's hash of a prepared folder or an annotation file: read from dvc.lock when a DVC stage runs (DVC has
    just checked its deps against it), else computed."""
    under_dvc = bool(os.environ.get("DVC_STAGE"))
    return (locked_md5(path) if under_dvc else None) or dvc_md5(path)


def model_key(checkpoint: Path, config: dict) -> str:
    """Which trained model an export is made from: the checkpoint's bytes and the model config it is built with
    (an --img-size given on export changes the config)."""
    blob = file_md5(checkpoint) + json.dumps(config, sort_keys=True)
    return hashlib.md5(blob.encode("utf-8")).hexdigest()


def count_items(path: Path) -> int:
    return len(json.loads(path.read_text(encoding="utf-8")))


def prepared_version(entry: DatasetEntry, prepared_dir: str) -> DataVersion:
    """The prepared folder of a dataset: its hash and the items of each of its annotation files that exist."""
    folder = Path(prepared_dir)
    files = [name for name in (entry.train_file, entry.val_file, entry.test_file) if name]
    items = {name: count_items(folder / name) for name in files if (folder / name).is_file()}
    return DataVersion(entry.name, prepared_dir, data_digest(folder), items)


def annotation_version(path: Path) -> DataVersion:
    """One annotation file outside the prepared folder (evaluate --annotations)."""
    return DataVersion(path.name, str(path), data_digest(path), {path.name: count_items(path)})
