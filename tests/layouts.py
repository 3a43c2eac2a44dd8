"""Small datasets written in the layouts of docs/own-data.md (VOC2007 as its two official archives, COCO 2014,
WIDER-Attribute, a custom CSV folder): real JPEGs of coloured boxes, one colour per class, so that a model learns
something in two epochs."""

from __future__ import annotations

import json
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from csra.data.datasets import COCO_CLASSES, VOC_CLASSES, WIDER_ATTRIBUTES

COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]
SIZE = (64, 48)


def photo(path: Path, classes: list[int], seed: int) -> list[tuple[int, list[int]]]:
    """A JPEG at path: a grey noisy background and one box per class in that class's colour; (class, box)s."""
    rng = np.random.default_rng(seed)
    w, h = SIZE
    pixels = rng.integers(90, 160, (h, w, 3), dtype=np.uint8)
    boxes = []
    for c in classes:
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 16))
        x1, y1 = x0 + int(rng.integers(14, 20)), y0 + int(rng.integers(12, 16))
        pixels[y0:y1, x0:x1] = COLOURS[c % len(COLOURS)]
        boxes.append((c, [x0, y0, x1, y1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)
    return boxes


def labels_of(i: int, count: int) -> list[int]:
    """One or two of the first `count` classes for image i, deterministically."""
    first = i % count
    return [first] if i % 3 else sorted({first, (i * 7 + 1) % count})


# --- VOC2007 ---------------------------------------------------------------------------------------------------
VOC_IDS = [f"{i:06d}" for i in range(1, 41)]
VOC_TEST = [x for x in VOC_IDS if int(x) % 5 in (1, 3)]  # 000001 is a test image, 000005 and 000007 trainval
VOC_TRAINVAL = [x for x in VOC_IDS if x not in VOC_TEST]


def _voc_xml(image_id: str, boxes: list[tuple[int, list[int]]]) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    for c, (x0, y0, x1, y1) in boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = VOC_CLASSES[c]
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (x0, y0, x1, y1)):
            ET.SubElement(box, tag).text = str(value + 1)
    return ET.tostring(root)


def voc_image(folder: Path, image_id: str) -> bytes:
    """JPEGImages/<id>.jpg and Annotations/<id>.xml in a VOC folder; the JPEG's bytes."""
    path = folder / "JPEGImages" / f"{image_id}.jpg"
    boxes = photo(path, labels_of(int(image_id), 6), int(image_id))
    (folder / "Annotations").mkdir(parents=True, exist_ok=True)
    (folder / "Annotations" / f"{image_id}.xml").write_bytes(_voc_xml(image_id, boxes))
    return path.read_bytes()


def write_voc_archives(folder: Path) -> dict[str, bytes]:
    """VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar in folder, each holding VOCdevkit/VOC2007/ as the
    official ones do; the bytes of each JPEG by image id."""
    stage, jpegs = folder / "voc-build", {}
    for split, ids in (("trainval", VOC_TRAINVAL), ("test", VOC_TEST)):
        voc = stage / split / "VOCdevkit" / "VOC2007"
        jpegs.update({image_id: voc_image(voc, image_id) for image_id in ids})
        sets = voc / "ImageSets" / "Main"
        sets.mkdir(parents=True)
        lists = ({"test": ids} if split == "test" else
                 {"trainval": ids, "train": [x for x in ids if x not in ids[::4]], "val": ids[::4]})
        for name, listed in lists.items():
            (sets / f"{name}.txt").write_text("".join(f"{x}\n" for x in listed))
        name = "VOCtrainval_06-Nov-2007.tar" if split == "trainval" else "VOCtest_06-Nov-2007.tar"
        with tarfile.open(folder / name, "w") as tar:
            tar.add(stage / split / "VOCdevkit", arcname="VOCdevkit")
    return jpegs


# --- COCO 2014, WIDER-Attribute, custom CSV ------------------------------------------------------------------------
def coco_file(path: Path, images_dir: Path, names: list[str], categories: list[dict], classes: int) -> None:
    """A COCO instances file at path for the photos names, written into images_dir with one or two of the first
    `classes` categories each."""
    images, annotations = [], []
    for n, name in enumerate(names, start=1):
        for c, (x0, y0, x1, y1) in photo(images_dir / name, labels_of(n, classes), n):
            annotations.append({"id": len(annotations) + 1, "image_id": n, "category_id": categories[c]["id"],
                                "iscrowd": 0, "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})
        images.append({"id": n, "file_name": name, "width": SIZE[0], "height": SIZE[1]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def write_coco2014(root: Path) -> Path:
    """annotations/instances_{train,val}2014.json and images/{train,val}2014/, 80 categories (ids 1-90 with gaps)."""
    ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    categories = [{"id": i, "name": name} for i, name in zip(ids, COCO_CLASSES)]
    for tag, count in (("train", 6), ("val", 4)):
        names = [f"COCO_{tag}2014_{n:012d}.jpg" for n in range(1, count + 1)]
        coco_file(root / "annotations" / f"instances_{tag}2014.json", root / "images" / f"{tag}2014", names,
                  categories, 6)
    return root


def write_wider(root: Path) -> Path:
    """Annotations/wider_attribute_{trainval,test}.json and Image/<event>/<photo>.jpg, two persons a photo."""
    for split, count in (("trainval", 4), ("test", 2)):
        entries = []
        for n in range(count):
            name = f"{n}--Parade/{n}_Parade_{split}_{n}.jpg"
            boxes = photo(root / "Image" / name, [n % 6, (n + 2) % 6], n)
            targets = [{"bbox": [x0, y0, x1 - x0, y1 - y0],
                        "attribute": [1 if (k + c) % 3 == 0 else -1 for k in range(len(WIDER_ATTRIBUTES))]}
                       for c, (x0, y0, x1, y1) in boxes]
            entries.append({"file_name": name, "targets": targets})
        out = root / "Annotations" / f"wider_attribute_{split}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"images": entries}))
    return root


def write_custom_csv(root: Path) -> Path:
    """train.csv, test.csv (`path,label1;label2`, paths relative to root), images/, classes.txt."""
    names = ["red", "green", "blue"]
    for split, count in (("train", 8), ("test", 4)):
        rows = ["path,labels\n"]
        for n in range(count):
            classes = labels_of(n, 3)
            photo(root / "images" / f"{split}_{n}.jpg", classes, n)
            rows.append(f"images/{split}_{n}.jpg,{';'.join(names[c] for c in classes)}\n")
        (root / f"{split}.csv").write_text("".join(rows))
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in names))
    return root


def write_custom_voc(root: Path) -> Path:
    """Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/{train,val,test}.txt, any class names (VOC's here)."""
    for image_id in VOC_IDS[:12]:
        voc_image(root, image_id)
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    for name, listed in (("train", VOC_IDS[:6]), ("val", VOC_IDS[6:8]), ("test", VOC_IDS[8:12])):
        (sets / f"{name}.txt").write_text("".join(f"{x}\n" for x in listed))
    return root


def write_custom_coco(root: Path) -> Path:
    """train.json and test.json (COCO format, the same three categories) and images/."""
    categories = [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}, {"id": 3, "name": "blue"}]
    for split, count in (("train", 6), ("test", 3)):
        coco_file(root / f"{split}.json", root / "images", [f"{split}_{n}.jpg" for n in range(1, count + 1)],
                  categories, 3)
    return root
