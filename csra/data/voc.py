"""Pascal VOC layout → official annotation JSON (label codes of the official prepare_voc script)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from csra.data.datasets import VOC_CLASSES
from csra.errors import CSRAError
from csra.fileio import read_text


def parse_annotation(xml_path: Path) -> tuple[str | None, list[tuple[str, bool]]]:
    """(<filename> or None, [(class name, difficult)] for every <object>) of a VOC annotation file."""
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as e:
        raise CSRAError(f"{xml_path}: cannot parse VOC annotation ({e})") from None
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        difficult = (obj.findtext("difficult") or "0").strip()
        if not name or difficult not in ("0", "1"):
            raise CSRAError(f"{xml_path}: <object> needs a <name> and <difficult> of 0 or 1")
        objects.append((name, difficult == "1"))
    filename = (root.findtext("filename") or "").strip()
    return filename or None, objects


def voc_target(objects: list[tuple[str, bool]], classes: list[str], source: Path) -> list[int]:
    """Per class: 1 if a non-difficult object of it, 0 if all its objects are difficult, -1 if none."""
    index = {name: i for i, name in enumerate(classes)}
    target = [-1] * len(classes)
    for name, difficult in objects:
        if name not in index:
            raise CSRAError(f"{source}: class {name!r} is not in the class list ({len(classes)} classes)")
        i = index[name]
        target[i] = max(target[i], 0 if difficult else 1)
    return target


def read_ids(path: Path, required: bool = True) -> list[str]:
    """Image ids of an ImageSets/Main file; an optional file that is absent gives none."""
    if not path.is_file():
        if not required:
            return []
        raise CSRAError(f"{path}: image set file not found")
    return [line.split()[0] for line in read_text(path).splitlines() if line.strip()]


def convert_voc_folder(
    voc: Path, classes: list[str], img_dir: str, trainval_ids: set[str], test_ids: set[str], use_filename: bool,
    keep_unlabelled: bool = True,
) -> tuple[list[dict], list[dict]]:
    """(trainval, test) items of a VOC year folder (Annotations/, JPEGImages/), sorted by image id.

    trainval turns -1 into 0; test keeps 1/0/-1. img_path is img_dir joined with <id>.jpg, or with the XML's
    <filename> when use_filename is set and the file names one. Without keep_unlabelled an image whose XML has
    no <object> gives no item, as in the official script.
    """
    trainval, test = [], []
    for image_id in sorted(trainval_ids | test_ids):
        xml_path = voc / "Annotations" / f"{image_id}.xml"
        if not xml_path.is_file():
            raise CSRAError(f"{xml_path}: image {image_id} is listed in ImageSets/Main but has no annotation")
        filename, objects = parse_annotation(xml_path)
        if not objects and not keep_unlabelled:
            continue
        target = voc_target(objects, classes, xml_path)
        img_path = os.path.join(img_dir, filename if use_filename and filename else f"{image_id}.jpg")
        if image_id in trainval_ids:
            trainval.append({"target": [max(t, 0) for t in target], "img_path": img_path})
        if image_id in test_ids:
            test.append({"target": target, "img_path": img_path})
    return trainval, test


def convert_voc07(
    data_path: str | Path, classes: list[str] = VOC_CLASSES, path_prefix: str | Path | None = None,
    keep_unlabelled: bool = True,
) -> tuple[list[dict], list[dict]]:
    """(trainval, test) items from a VOCdevkit-style folder holding VOC2007/.

    trainval = train.txt + val.txt with -1 turned into 0; test keeps 1/0/-1. Items are sorted by image id;
    img_path is data_path (or path_prefix, where the folder will live) joined with VOC2007/JPEGImages/<id>.jpg,
    as the official script writes it. keep_unlabelled=False drops images without objects, as that script does
    (real VOC2007 has none; the built-in dataset keeps them as images of no class).
    """
    voc = Path(data_path) / "VOC2007"
    if not voc.is_dir():
        raise CSRAError(f"{data_path}: no VOC2007 folder inside (expected the VOCdevkit folder)")
    sets = voc / "ImageSets" / "Main"
    trainval_ids = set(read_ids(sets / "train.txt") + read_ids(sets / "val.txt"))
    test_ids = set(read_ids(sets / "test.txt"))
    img_dir = os.path.join(str(path_prefix or data_path), "VOC2007/JPEGImages/")
    return convert_voc_folder(voc, classes, img_dir, trainval_ids, test_ids, False, keep_unlabelled)


def convert_voc2007(data_path: str) -> tuple[list[dict], list[dict], list[str]]:
    """(trainval, test, class names) of real VOC2007, exactly as the official prepare_voc script writes them."""
    return *convert_voc07(data_path, VOC_CLASSES, keep_unlabelled=False), list(VOC_CLASSES)


def voc07_val(data_path: str | Path, classes: list[str], path_prefix: str | Path | None = None,
              keep_unlabelled: bool = True) -> list[dict]:
    """The images of VOC2007/ImageSets/Main/val.txt with the test file's codes (1, 0 = difficult only, -1): the
    held-out split a run selects its best epoch on (empty when there is no val.txt)."""
    voc = Path(data_path) / "VOC2007"
    val_ids = set(read_ids(voc / "ImageSets" / "Main" / "val.txt", required=False))
    img_dir = os.path.join(str(path_prefix or data_path), "VOC2007/JPEGImages/")
    return convert_voc_folder(voc, classes, img_dir, set(), val_ids, False, keep_unlabelled)[1]


def voc2007_val(data_path: str, classes: list[str]) -> list[dict]:
    """Real VOC2007's val split (see voc07_val), images without objects left out as in its trainval."""
    return voc07_val(data_path, classes, keep_unlabelled=False)
