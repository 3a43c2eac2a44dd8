"""Preparing a dataset: its converter (or the built-in generator) → the two annotation files and classes.txt,
written into the prepared folder all at once or not at all."""

from __future__ import annotations

from pathlib import Path

from csra.data.formats import CLASSES_FILE, write_annotations, write_classes
from csra.data.registry import get_dataset
from csra.data.synthetic import SyntheticSpec, generate_synthetic
from csra.data.voc import convert_voc07, voc07_val
from csra.errors import CSRAError
from csra.fileio import atomic_dir

SYNTHETIC_DIR = "synthetic"  # the built-in dataset is generated inside the prepared folder


def prepare_dataset(
    name: str, out_dir: str | Path, raw_path: str | Path | None = None, synthetic: SyntheticSpec | None = None
) -> list[str]:
    """Write out_dir/{train_file, test_file, classes.txt}, the val file where the raw layout has a val split, and
    the generated images for synthetic, atomically.

    Returns the class names. For synthetic, img_path entries point into out_dir/synthetic/VOC2007/JPEGImages.
    """
    entry = get_dataset(name)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        if entry.converter is None:
            if synthetic is None:
                raise CSRAError("dataset synthetic needs its prepare.synthetic settings")
            generate_synthetic(tmp / SYNTHETIC_DIR, synthetic)
            classes = list(entry.classes)
            train, test = convert_voc07(tmp / SYNTHETIC_DIR, classes, path_prefix=out_dir / SYNTHETIC_DIR)
            val = voc07_val(tmp / SYNTHETIC_DIR, classes, path_prefix=out_dir / SYNTHETIC_DIR)
        else:
            if raw_path is None:
                raise CSRAError(f"dataset {name} needs data.raw_path: {entry.layout}")
            if not Path(raw_path).is_dir():
                raise CSRAError(f"{raw_path}: raw data folder of dataset {name} not found (data.raw_path)")
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
    return classes
