"""A prepared folder read for a run: the dataset's annotation files and class names (the registry's rule), with
the cheap check on start (label codes, class counts, image files present); what a training run consumes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from csra.data.check import Findings, check_items
from csra.data.formats import read_annotations
from csra.data.registry import DatasetEntry, get_dataset, resolve_classes
from csra.errors import CSRAError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainData:
    """What a run trains and validates on: annotation items (0/1 training targets; validation targets in the
    codes of label_format), the class names, and whether unreadable images are left out (skip_bad) or fatal."""

    train_items: list[dict]
    val_items: list[dict]
    classes: list[str]
    label_format: str
    skip_bad: bool = False


def usable_items(prepared: Path, files: dict[str, list[dict]], classes: list[str], skip: bool) -> list[list[dict]]:
    """The cheap check on start (class counts, image files present): missing images are an error, or with skip
    are reported and their items left out."""
    found = Findings()
    for name, items in files.items():
        found.extend(check_items(prepared / name, items, classes, decode=False))
    for warning in found.warnings:
        log.warning("warning: %s", warning)
    if found.errors and not skip:
        raise CSRAError("; ".join(found.errors) + " (data.bad_images: skip leaves them out)")
    for error in found.errors:
        log.warning("warning: %s; skipped (data.bad_images: skip)", error)
    return [[item for item in items if item["img_path"] not in found.bad_paths] for items in files.values()]


def load_training_data(dataset: str | DatasetEntry, prepared_dir: str | Path, skip_bad: bool) -> TrainData:
    """The train file and the validation (test) file of a prepared dataset, checked, with its class names."""
    entry = get_dataset(dataset) if isinstance(dataset, str) else dataset
    prepared = Path(prepared_dir)
    classes = resolve_classes(entry, prepared)
    train_items = read_annotations(prepared / entry.train_file, label_format="binary")
    val_items = read_annotations(prepared / entry.test_file, label_format=entry.label_format)
    train_items, val_items = usable_items(
        prepared, {entry.train_file: train_items, entry.test_file: val_items}, classes, skip_bad)
    return TrainData(train_items, val_items, classes, entry.label_format, skip_bad)
