"""WIDER-Attribute layout → official annotation JSON: one item per person, with its box and 14 attributes."""

from __future__ import annotations

import os
from pathlib import Path

from csra.data.datasets import WIDER_ATTRIBUTES
from csra.data.formats import read_json
from csra.errors import CSRAError

# Raw attribute values: 1 present, -1 absent, 0 unspecified. Unspecified is 0 in trainval and 99 (ignored by
# mAP) in test, as the official prepare_wider script writes it.
WIDER_SPLITS = {"trainval": 0, "test": 99}


def wider_items(ann_file: Path, img_dir: str, unspecified: int) -> list[dict]:
    """Items {"img_path", "bbox" [x, y, w, h], "target"} in file order: images, then their persons."""
    data = read_json(ann_file, "WIDER-Attribute annotation")
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise CSRAError(f"{ann_file}: expected an object with an 'images' list")
    codes = {-1: 0, 1: 1, 0: unspecified}
    items = []
    for i, image in enumerate(images):
        if not isinstance(image, dict) or not isinstance(image.get("file_name"), str) \
                or not isinstance(image.get("targets"), list):
            raise CSRAError(f"{ann_file}: images[{i}] needs a 'file_name' and a 'targets' list")
        for j, person in enumerate(image["targets"]):
            where = f"{ann_file}: images[{i}].targets[{j}]"
            bbox = person.get("bbox") if isinstance(person, dict) else None
            attribute = person.get("attribute") if isinstance(person, dict) else None
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise CSRAError(f"{where} needs a 'bbox' [x, y, w, h]")
            if not isinstance(attribute, list) or any(not isinstance(a, int) or a not in codes for a in attribute):
                raise CSRAError(f"{where} needs an 'attribute' list of -1, 0 and 1")
            if len(attribute) != len(WIDER_ATTRIBUTES):
                raise CSRAError(f"{where} has {len(attribute)} attributes, expected {len(WIDER_ATTRIBUTES)}")
            items.append({"img_path": os.path.join(img_dir, image["file_name"]), "bbox": bbox,
                          "target": [codes[a] for a in attribute]})
    return items


def convert_wider(data_path: str | Path) -> tuple[list[dict], list[dict], list[str]]:
    """(trainval, test, attribute names) from a WIDER-Attribute folder: Annotations/wider_attribute_{trainval,
    test}.json and Image/, img_path written as the official prepare_wider script does."""
    img_dir = os.path.join(str(data_path), "Image")
    ann_dir = Path(data_path) / "Annotations"
    trainval, test = (wider_items(ann_dir / f"wider_attribute_{tag}.json", img_dir, unspecified)
                      for tag, unspecified in WIDER_SPLITS.items())
    return trainval, test, list(WIDER_ATTRIBUTES)
