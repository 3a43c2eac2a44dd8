"""A user's own labelled images → official annotation JSON, from a VOC-layout folder, a COCO-format JSON or a CSV.

Each layout has a train and a test split; class names come from classes.txt in the folder when it has one,
else from the annotations (VOC, CSV: sorted names; COCO: the category names by id).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from csra.data.coco import coco_classes, coco_items, load_coco
from csra.data.formats import CLASSES_FILE, read_classes
from csra.data.voc import convert_voc_folder, parse_annotation, read_ids
from csra.errors import CSRAError, describe_difference
from csra.fileio import read_text

CSV_HEADER = ["path", "labels"]


def _given_classes(folder: Path) -> list[str] | None:
    return read_classes(folder / CLASSES_FILE) if (folder / CLASSES_FILE).is_file() else None


def convert_custom_voc(data_path: str | Path) -> tuple[list[dict], list[dict], list[str]]:
    """(train, test, classes) from a VOC year-style folder: Annotations/, JPEGImages/, ImageSets/Main/ with
    train.txt (val.txt, if present, joins it) and test.txt. Label codes and item order as voc07; img_path uses
    the XML's <filename> when it has one, else <id>.jpg."""
    folder = Path(data_path)
    sets = folder / "ImageSets" / "Main"
    if not (folder / "Annotations").is_dir():
        raise CSRAError(f"{folder}: no Annotations folder inside (expected a VOC-layout folder)")
    train_ids = set(read_ids(sets / "train.txt") + read_ids(sets / "val.txt", required=False))
    test_ids = set(read_ids(sets / "test.txt"))
    classes = _given_classes(folder)
    if classes is None:
        names = set()
        for image_id in train_ids | test_ids:
            xml_path = folder / "Annotations" / f"{image_id}.xml"
            if xml_path.is_file():
                names.update(name for name, _ in parse_annotation(xml_path)[1])
        if not names:
            raise CSRAError(f"{folder / 'Annotations'}: no <object> in the annotations of the listed images")
        classes = sorted(names)
    img_dir = os.path.join(str(data_path), "JPEGImages/")
    train, test = convert_voc_folder(folder, classes, img_dir, train_ids, test_ids, use_filename=True)
    return train, test, classes


def custom_voc_val(data_path: str | Path, classes: list[str]) -> list[dict]:
    """The images of ImageSets/Main/val.txt (if any) with the test file's codes: the held-out selection split."""
    folder = Path(data_path)
    val_ids = set(read_ids(folder / "ImageSets" / "Main" / "val.txt", required=False))
    img_dir = os.path.join(str(data_path), "JPEGImages/")
    return convert_voc_folder(folder, classes, img_dir, set(), val_ids, use_filename=True)[1]


def convert_custom_coco(data_path: str | Path) -> tuple[list[dict], list[dict], list[str]]:
    """(train, test, classes) from a folder with train.json and test.json in COCO format and images/; the same
    rules as coco (sorted category ids, images without annotations skipped)."""
    folder = Path(data_path)
    train_coco, test_coco = load_coco(folder / "train.json"), load_coco(folder / "test.json")
    classes = coco_classes(train_coco)
    if sorted(train_coco.cats) != sorted(test_coco.cats) or coco_classes(test_coco) != classes:
        raise CSRAError(f"{folder / 'test.json'}: {len(test_coco.cats)} categories differ from the "
                        f"{len(classes)} of {folder / 'train.json'}; both splits need the same categories")
    given = _given_classes(folder)
    if given is not None and given != classes:
        raise CSRAError(f"{folder / CLASSES_FILE}: names differ from the categories of {folder / 'train.json'}: "
                        f"{describe_difference(given, classes)}")
    img_dir = os.path.join(str(data_path), "images/")
    return coco_items(train_coco, img_dir), coco_items(test_coco, img_dir), classes


def _read_csv(path: Path) -> list[tuple[str, list[str], int]]:
    """(image path, labels, line number) per row of `path,label1;label2`; a first row `path,labels` is a header."""
    if not path.is_file():
        raise CSRAError(f"{path}: CSV file not found (rows of path,label1;label2)")
    rows = []
    for line, row in enumerate(csv.reader(io.StringIO(read_text(path), newline="")), start=1):
        if not row or (line == 1 and [c.strip() for c in row] == CSV_HEADER):
            continue
        if len(row) != 2 or not row[0].strip():
            raise CSRAError(f"{path}:{line}: expected 'path,label1;label2', got {','.join(row)!r}")
        labels = [label.strip() for label in row[1].split(";") if label.strip()]
        rows.append((row[0].strip(), labels, line))
    if not rows:
        raise CSRAError(f"{path}: no rows; expected rows of path,label1;label2")
    return rows


def convert_custom_csv(data_path: str | Path) -> tuple[list[dict], list[dict], list[str]]:
    """(train, test, classes) from a folder with train.csv and test.csv; image paths are relative to the folder
    (or absolute), items keep the row order, a row without labels is an image of none of the classes (0/1)."""
    folder = Path(data_path)
    splits = {name: _read_csv(folder / f"{name}.csv") for name in ("train", "test")}
    classes = _given_classes(folder) or sorted({label for rows in splits.values() for _, ls, _ in rows for label in ls})
    if not classes:
        raise CSRAError(f"{folder}: no labels in train.csv or test.csv; expected rows of path,label1;label2")
    index = {name: i for i, name in enumerate(classes)}
    out = []
    for name, rows in splits.items():
        items = []
        for img, labels, line in rows:
            target = [0] * len(classes)
            for label in labels:
                if label not in index:
                    raise CSRAError(f"{folder / f'{name}.csv'}:{line}: label {label!r} is not in {CLASSES_FILE}")
                target[index[label]] = 1
            items.append({"target": target, "img_path": os.path.join(str(data_path), img)})
        out.append(items)
    return out[0], out[1], classes
