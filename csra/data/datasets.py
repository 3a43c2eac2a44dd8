"""The datasets the pipeline knows, one entry each: its converter, class names, label codes and file names, and
the one rule that gives the class names of a prepared folder."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from csra.data.formats import CLASSES_FILE, read_classes
from csra.errors import CSRAError, describe_difference

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip

# COCO 2014's 80 categories in the order of their category ids.
COCO_CLASSES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic_light",
    "fire_hydrant", "stop_sign", "parking_meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports_ball", "kite", "baseball_bat", "baseball_glove", "skateboard", "surfboard",
    "tennis_racket", "bottle", "wine_glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot_dog", "pizza", "donut", "cake", "chair", "couch",
    "potted_plant", "bed", "dining_table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell_phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy_bear",
    "hair_drier", "toothbrush",
]  # fmt: skip

WIDER_ATTRIBUTES = [
    "Male", "longHair", "sunglass", "Hat", "Tshirt", "longSleeve", "formal", "shorts", "jeans", "longPants",
    "skirt", "faceMask", "logo", "stripe",
]  # fmt: skip

# The built-in dataset's classes (csra.data.synthetic draws one shape per class).
SYNTHETIC_CLASSES = ["circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon", "arrow", "crescent"]

SELECTIONS = ("val", "test")  # what selects the best epoch: a split held out of training | the test split


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset: its two annotation files, the label codes of its test file (voc07 | coco | wider), its class
    names when they are fixed (else classes.txt holds them), and its converter as 'module:function' (raw folder →
    train items, test items, class names; imported only by prepare), or None for the generated built-in one."""

    name: str
    train_file: str
    test_file: str
    label_format: str
    classes: tuple[str, ...] | None
    converter: str | None
    layout: str = ""
    val_file: str | None = None  # a held-out split the raw layout defines (VOC's val.txt), in the test codes
    val_converter: str | None = None  # 'module:function': (raw folder, class names) → val items

    def convert(self, raw: str) -> tuple[list[dict], list[dict], list[str]]:
        return _function(self.converter)(raw)

    def convert_val(self, raw: str, classes: list[str]) -> list[dict]:
        return _function(self.val_converter)(raw, classes) if self.val_converter else []


def _function(name: str) -> Callable:
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function)


DATASETS: dict[str, DatasetEntry] = {entry.name: entry for entry in (
    DatasetEntry("synthetic", "trainval_voc07.json", "test_voc07.json", "voc07", tuple(SYNTHETIC_CLASSES), None,
                 val_file="val_voc07.json"),
    DatasetEntry("voc07", "trainval_voc07.json", "test_voc07.json", "voc07", tuple(VOC_CLASSES),
                 "csra.data.voc:convert_voc2007", "the VOCdevkit folder", "val_voc07.json",
                 "csra.data.voc:voc2007_val"),
    DatasetEntry("coco", "train_coco2014.json", "val_coco2014.json", "coco", tuple(COCO_CLASSES),
                 "csra.data.coco:convert_coco2014", "the COCO2014 folder with annotations/ and images/"),
    DatasetEntry("wider", "trainval_wider.json", "test_wider.json", "wider", tuple(WIDER_ATTRIBUTES),
                 "csra.data.wider:convert_wider", "the WIDER-Attribute folder with Annotations/ and Image/"),
    DatasetEntry("custom_voc", "train_custom.json", "test_custom.json", "voc07", None,
                 "csra.data.custom:convert_custom_voc", "a folder with Annotations/, JPEGImages/ and ImageSets/Main/",
                 "val_custom.json", "csra.data.custom:custom_voc_val"),
    DatasetEntry("custom_coco", "train_custom.json", "test_custom.json", "coco", None,
                 "csra.data.custom:convert_custom_coco", "a folder with train.json, test.json and images/"),
    DatasetEntry("custom_csv", "train_custom.json", "test_custom.json", "coco", None,
                 "csra.data.custom:convert_custom_csv", "a folder with train.csv and test.csv"),
)}


def get_dataset(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise CSRAError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


def resolve_classes(entry: DatasetEntry, prepared_dir: str | Path) -> list[str]:
    """The class names of a dataset, in index order. The one rule: classes.txt in the prepared folder when it is
    there (for a dataset with fixed names it must list exactly those), else the dataset's fixed names (annotation
    files of the official scripts come without a list); a dataset without fixed names needs classes.txt."""
    path = Path(prepared_dir) / CLASSES_FILE
    fixed = list(entry.classes) if entry.classes is not None else None
    if path.is_file():
        names = read_classes(path)
        if fixed is not None and names != fixed:
            raise CSRAError(f"{path}: not the classes of dataset {entry.name}: {describe_difference(names, fixed)}")
        return names
    if fixed is None:
        raise CSRAError(f"{path}: class list not found (dataset {entry.name} names its classes there; run csra "
                        "prepare)")
    return fixed

