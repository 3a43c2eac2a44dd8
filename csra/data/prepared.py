"""The prepared folder: how it is written (a dataset's converter, or the built-in generator → the annotation files
and classes.txt, and the digest of what each split's readers read, all at once or not at all) and how a run reads it
(the dataset's annotation files and class names by datasets.py's rule, with the cheap check on start: label codes,
class counts, image files present)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from csra.data.check import Findings, check_items
from csra.data.datasets import SELECTIONS, DatasetEntry, get_dataset, resolve_classes
from csra.data.formats import CLASSES_FILE, items_digest, read_annotations, write_annotations, write_classes
from csra.data.synthetic import SyntheticSpec, generate_synthetic
from csra.data.voc import convert_voc07, voc07_val
from csra.errors import CSRAError
from csra.fileio import atomic_dir, file_md5

log = logging.getLogger(__name__)

SYNTHETIC_DIR = "synthetic"  # the built-in dataset is generated inside the prepared folder
MISSING = "missing"  # in place of the MD5 of an image that is not there (the stages skip or refuse it)


# Writing: csra prepare.
def prepare_dataset(
    name: str, out_dir: str | Path, raw_path: str | Path | None = None, synthetic: SyntheticSpec | None = None
) -> list[str]:
    """Write out_dir/{train_file, test_file, classes.txt}, the val file where the raw layout has a val split, and
    the generated images for synthetic, atomically.

    Returns the class names. For synthetic, img_path entries point into out_dir/synthetic/VOC2007/JPEGImages.
    """
    entry = get_dataset(name)
    out_dir = Path(out_dir)
    check_source(entry, raw_path, synthetic)
    with atomic_dir(out_dir) as tmp:
        if entry.converter is None:
            generate_synthetic(tmp / SYNTHETIC_DIR, synthetic)
            classes = list(entry.classes)
            train, test = convert_voc07(tmp / SYNTHETIC_DIR, classes, path_prefix=out_dir / SYNTHETIC_DIR)
            val = voc07_val(tmp / SYNTHETIC_DIR, classes, path_prefix=out_dir / SYNTHETIC_DIR)
        else:
            train, test, classes = entry.convert(str(raw_path))
            val = entry.convert_val(str(raw_path), classes)
        for file_name, items in ((entry.train_file, train), (entry.test_file, test)):
            if not items:
                raise CSRAError(f"{raw_path}: dataset {name} gives no items for {file_name}")
        write_annotations(tmp / entry.train_file, train)
        write_annotations(tmp / entry.test_file, test)
        if val:
            write_annotations(tmp / entry.val_file, val)
        write_classes(tmp / CLASSES_FILE, classes)
        files = {"train": (entry.train_file, train), "val": (entry.val_file, val), "test": (entry.test_file, test)}
        for split, (file_name, items) in files.items():
            write_digests(tmp, out_dir, split, file_name if items else None, items or [])
    return classes


def check_source(entry: DatasetEntry, raw_path: str | Path | None, synthetic: SyntheticSpec | None) -> None:
    """What prepare reads is there: the raw folder of a real dataset, the settings of the built-in one — checked
    before anything is written."""
    if entry.converter is None:
        if synthetic is None:
            raise CSRAError("dataset synthetic needs its prepare.synthetic settings")
        return
    if raw_path is None:
        raise CSRAError(f"dataset {entry.name} needs data.raw_path: {entry.layout}")
    if not Path(raw_path).is_dir():
        raise CSRAError(f"{raw_path}: raw data folder of dataset {entry.name} not found (data.raw_path)")


# One digest file per split, in md5sum's format: the MD5 of every file a reader of that split reads (the annotation
# file, classes.txt, each image). A stage depends on the digests of the splits it reads, so that changing an image
# re-runs the stages that read it and no other: train reads train and its selection split (val or test), evaluate
# test. val.md5 is empty where the layout has no val split (the held-out images are then drawn from train's).
def write_digests(tmp: Path, out_dir: Path, split: str, file_name: str | None, items: list[dict]) -> None:
    """tmp/<split>.md5: one `MD5  path` line per file a reader of the split reads, paths as the stages see them
    (inside out_dir for the prepared files, whose bytes are still in tmp), sorted; empty when file_name is None."""

    def on_disk(path: str) -> Path:
        inside = Path(path).relative_to(out_dir) if Path(path).is_relative_to(out_dir) else None
        return tmp / inside if inside is not None else Path(path)

    paths = sorted({str(out_dir / file_name), str(out_dir / CLASSES_FILE)} | {item["img_path"] for item in items}
                   if file_name else set())
    def md5(path: str) -> str:
        return file_md5(on_disk(path)) if on_disk(path).is_file() else MISSING

    text = "".join(f"{md5(path)}  {path}\n" for path in paths)
    (tmp / f"{split}.md5").write_text(text, encoding="utf-8")


def digest_images(digest: str | Path, count: int) -> list[Path]:
    """The first count image files (by path) that a split's digest lists and that are there: a sample of the split
    for any dataset (the demo's default). The annotation file and classes.txt it also lists are not images."""
    digest = Path(digest)
    if not digest.is_file():
        raise CSRAError(f"{digest}: split digest not found (csra prepare writes it)")
    listed = [line.split("  ", 1) for line in digest.read_text(encoding="utf-8").splitlines() if "  " in line]
    files = [Path(path) for md5, path in listed if md5 != MISSING]
    images = [f for f in files if f.suffix != ".json" and f.name != CLASSES_FILE and f.is_file()]
    if not images:
        raise CSRAError(f"{digest}: lists no image file that is there")
    return images[:count]


# Reading: what a training run consumes.
@dataclass(frozen=True)
class Selection:
    """The images that pick the best epoch and tune the thresholds: their split ('val': held out of training;
    'test': the test split, as the paper's code does), where they come from, how many, and a digest of them by
    which evaluate recognises them."""

    split: str
    source: str
    items: int
    digest: str


class SkippedImage(NamedTuple):
    """An image a run leaves out (data.bad_images: skip): its split ('train' or 'selection'), its path and why
    ('missing' on start, 'unreadable' when a loader first meets it)."""

    split: str
    path: str
    reason: str


@dataclass(frozen=True)
class TrainData:
    """What a run trains and validates on: annotation items (0/1 training targets; validation targets in the
    codes of label_format), the class names, whether unreadable images are left out (skip_bad) or fatal, and
    what the validation items are (selection); skipped: the images left out on start (files missing)."""

    train_items: list[dict]
    val_items: list[dict]
    classes: list[str]
    label_format: str
    skip_bad: bool = False
    selection: Selection | None = None
    skipped: tuple[SkippedImage, ...] = ()


def held_out(items: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(kept, held out): a seeded fraction of the items, at least one and never all, both in file order."""
    count = min(max(1, round(fraction * len(items))), len(items) - 1)
    chosen = set(np.random.default_rng(seed).permutation(len(items))[:count].tolist())
    return ([item for i, item in enumerate(items) if i not in chosen],
            [item for i, item in enumerate(items) if i in chosen])


def selection_split(entry: DatasetEntry, prepared: Path, train_items: list[dict], split: str, fraction: float,
                    seed: int) -> tuple[list[dict], list[dict], str, str]:
    """(train items, validation items, their label format, where they come from) for a selection split."""
    if split not in SELECTIONS:
        raise CSRAError(f"selection split must be one of {', '.join(SELECTIONS)}, got {split!r}")
    if split == "test":
        val = read_annotations(prepared / entry.test_file, label_format=entry.label_format)
        return train_items, val, entry.label_format, entry.test_file
    if entry.val_file and (prepared / entry.val_file).is_file():
        val = read_annotations(prepared / entry.val_file, label_format=entry.label_format)
        held = {item["img_path"] for item in val}
        return [item for item in train_items if item["img_path"] not in held], val, entry.label_format, \
            entry.val_file
    if len(train_items) < 2:
        raise CSRAError(f"{prepared / entry.train_file}: {len(train_items)} image(s): too few to hold out a "
                        "validation split (data.selection: test validates on the test split)")
    train, val = held_out(train_items, fraction, seed)
    return train, val, "coco", f"{len(val)} of the {len(train_items)} images of {entry.train_file} (seed {seed})"


def require_positives(items: list[dict], source: str) -> None:
    """A file whose targets hold no positive at all cannot rank anything (mAP undefined): one line."""
    if not any(code == 1 for item in items for code in item["target"]):
        raise CSRAError(f"{source}: no positive label in any of its {len(items)} images; a validation mAP needs "
                        "at least one")


def usable_items(prepared: Path, files: dict[str, list[dict]] | list[tuple[str, list[dict]]], classes: list[str],
                 skip: bool) -> list[list[dict]]:
    """The cheap check on start (class counts, image files present) of (file name, items) pairs: missing images
    are an error, or with skip are reported and their items left out."""
    files = list(files.items()) if isinstance(files, dict) else files
    found = Findings()
    for name, items in files:
        found.extend(check_items(prepared / name, items, classes, decode=False))
    for warning in found.warnings:
        log.warning("warning: %s", warning)
    if found.errors and not skip:
        raise CSRAError("; ".join(found.errors) + " (data.bad_images: skip leaves them out)")
    for error in found.errors:
        log.warning("warning: %s; skipped (data.bad_images: skip)", error)
    return [[item for item in items if item["img_path"] not in found.bad_paths] for _, items in files]


def load_training_data(dataset: str | DatasetEntry, prepared_dir: str | Path, skip_bad: bool, selection: str = "val",
                       val_fraction: float = 0.1, val_seed: int = 0) -> TrainData:
    """The training items and the selection (validation) items of a prepared dataset, checked, with its class
    names. selection 'val' holds out the dataset's val file (VOC's val.txt) or else a seeded val_fraction of the
    train file; 'test' validates on the test file (the official protocol)."""
    entry = get_dataset(dataset) if isinstance(dataset, str) else dataset
    prepared = Path(prepared_dir)
    classes = resolve_classes(entry, prepared)
    train_items = read_annotations(prepared / entry.train_file, label_format="binary")
    train_items, val_items, label_format, source = selection_split(entry, prepared, train_items, selection,
                                                                   val_fraction, val_seed)
    val_name = source if source.endswith(".json") else f"{entry.train_file} (held-out split)"
    listed = {"train": train_items, "selection": val_items}
    train_items, val_items = usable_items(prepared, [(entry.train_file, train_items), (val_name, val_items)], classes,
                                          skip_bad)
    kept = {item["img_path"] for item in train_items + val_items}
    skipped = tuple(SkippedImage(split, path, "missing") for split, items in listed.items()
                    for path in dict.fromkeys(item["img_path"] for item in items) if path not in kept)
    if not train_items:
        raise CSRAError(f"{prepared / entry.train_file}: no training image left to read")
    require_positives(train_items, str(prepared / entry.train_file))
    require_positives(val_items, f"{prepared}: the validation images ({source})")
    chosen = Selection(selection, source, len(val_items), items_digest(val_items))
    return TrainData(train_items, val_items, classes, label_format, skip_bad, chosen, skipped)
