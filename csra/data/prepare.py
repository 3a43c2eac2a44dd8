"""Preparing a dataset: its converter (or the built-in generator) → the two annotation files and classes.txt,
and the digest of what each split's readers read, written into the prepared folder all at once or not at all."""

from __future__ import annotations

from pathlib import Path

from csra.data.datasets import get_dataset
from csra.data.formats import CLASSES_FILE, write_annotations, write_classes
from csra.data.synthetic import SyntheticSpec, generate_synthetic
from csra.data.voc import convert_voc07, voc07_val
from csra.errors import CSRAError
from csra.fileio import atomic_dir, file_md5

SYNTHETIC_DIR = "synthetic"  # the built-in dataset is generated inside the prepared folder
# One digest file per split, in md5sum's format: the MD5 of every file a reader of that split reads (the annotation
# file, classes.txt, each image). A stage depends on the digests of the splits it reads, so that changing an image
# re-runs the stages that read it and no other: train reads train and its selection split (val or test), evaluate
# test. val.md5 is empty where the layout has no val split (the held-out images are then drawn from train's).
SPLITS = ("train", "val", "test")
MISSING = "missing"  # in place of the MD5 of an image that is not there (the stages skip or refuse it)


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
        files = {"train": (entry.train_file, train), "val": (entry.val_file, val), "test": (entry.test_file, test)}
        for split, (file_name, items) in files.items():
            write_digests(tmp, out_dir, split, file_name if items else None, items or [])
    return classes


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
