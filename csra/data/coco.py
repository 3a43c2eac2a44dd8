"""COCO-format instance annotations (COCO 2014 or any categories) → official annotation JSON, via pycocotools."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from pycocotools.coco import COCO

from csra.data.datasets import COCO_CLASSES
from csra.data.formats import read_json
from csra.errors import CSRAError

COCO_SPLITS = ("train", "val")


def load_coco(ann_file: Path) -> COCO:
    """A pycocotools index of a COCO-format JSON, its structure checked first (pycocotools prints and asserts)."""
    data = read_json(ann_file, "COCO annotation")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations",
                                                                                     "categories")):
        raise CSRAError(f"{ann_file}: expected a COCO object with 'images', 'annotations' and 'categories' lists")
    for key, fields in (("images", ("id", "file_name")), ("annotations", ("id", "image_id", "category_id")),
                        ("categories", ("id", "name"))):
        for i, entry in enumerate(data[key]):
            if not isinstance(entry, dict) or any(f not in entry for f in fields):
                raise CSRAError(f"{ann_file}: {key}[{i}] needs {' and '.join(repr(f) for f in fields)}")
            bad = [f for f in fields if f in ("id", "image_id", "category_id") and type(entry[f]) is not int]
            if bad:
                raise CSRAError(f"{ann_file}: {key}[{i}] has {bad[0]!r} {entry[bad[0]]!r}; COCO ids are integers")
    if not data["categories"]:
        raise CSRAError(f"{ann_file}: 'categories' is empty; expected at least one {{'id', 'name'}} category")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    unknown = {a["category_id"] for a in data["annotations"]} - set(coco.cats)
    if unknown:
        raise CSRAError(f"{ann_file}: annotations use category id {min(unknown)}, which 'categories' lacks")
    return coco


def coco_classes(coco: COCO) -> list[str]:
    """Category names in the order of their sorted ids: the class index order."""
    return [coco.cats[i]["name"] for i in sorted(coco.getCatIds())]


def coco_items(coco: COCO, img_dir: str) -> list[dict]:
    """One item per image that has annotations (crowd ones included), sorted by image id.

    Class index = position of the category id among the sorted ids; img_path = img_dir joined with file_name.
    """
    index = {cat_id: i for i, cat_id in enumerate(sorted(coco.getCatIds()))}
    items = []
    for image_id in sorted(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        if not anns:
            continue
        target = [0] * len(index)
        for ann in anns:
            target[index[ann["category_id"]]] = 1
        items.append({"target": target, "img_path": os.path.join(img_dir, coco.imgs[image_id]["file_name"])})
    return items


def convert_coco2014(data_path: str | Path) -> tuple[list[dict], list[dict], list[str]]:
    """(train, val, class names) from a COCO 2014 folder: annotations/instances_{train,val}2014.json and
    images/{train,val}2014/, img_path written as the official prepare_coco script does."""
    root = str(data_path)
    splits = []
    for tag in COCO_SPLITS:
        ann_file = Path(root) / "annotations" / f"instances_{tag}2014.json"
        coco = load_coco(ann_file)
        if len(coco.cats) != len(COCO_CLASSES):
            raise CSRAError(f"{ann_file}: {len(coco.cats)} categories, expected COCO's {len(COCO_CLASSES)}")
        splits.append(coco_items(coco, os.path.join(root, f"images/{tag}2014/")))
    return splits[0], splits[1], list(COCO_CLASSES)
