"""The datasets the pipeline knows: how each is prepared, its annotation files and its label format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from csra.data.annotations import CLASSES_FILE, read_classes, write_annotations, write_classes
from csra.data.classes import LABEL_FORMATS, VOC_CLASSES, WIDER_ATTRIBUTES
from csra.data.coco import convert_coco2014
from csra.data.custom import convert_custom_coco, convert_custom_csv, convert_custom_voc
from csra.data.synthetic import SyntheticSpec, generate_synthetic
from csra.data.voc import convert_voc07
from csra.data.wider import convert_wider
from csra.errors import CSRAError
from csra.fileio import atomic_dir

Converter = Callable[[str], tuple[list[dict], list[dict], list[str]]]


@dataclass(frozen=True)
class Source:
    name: str
    train_file: str
    test_file: str
    convert: Converter | None = None  # raw folder → (train items, test items, class names); None: synthetic
    layout: str = ""  # what the raw folder holds, for the error when it is missing

    @property
    def label_format(self) -> str:
        """Label codes of its test file: voc07 | coco | wider."""
        return LABEL_FORMATS[self.name]


def _voc07(raw: str) -> tuple[list[dict], list[dict], list[str]]:
    return *convert_voc07(raw, VOC_CLASSES, keep_unlabelled=False), list(VOC_CLASSES)


def _wider(raw: str) -> tuple[list[dict], list[dict], list[str]]:
    return *convert_wider(raw), list(WIDER_ATTRIBUTES)


SOURCES: dict[str, Source] = {
    "synthetic": Source("synthetic", "trainval_voc07.json", "test_voc07.json"),
    "voc07": Source("voc07", "trainval_voc07.json", "test_voc07.json", _voc07, "the VOCdevkit folder"),
    "coco": Source("coco", "train_coco2014.json", "val_coco2014.json", convert_coco2014,
                   "the COCO2014 folder with annotations/ and images/"),
    "wider": Source("wider", "trainval_wider.json", "test_wider.json", _wider,
                    "the WIDER-Attribute folder with Annotations/ and Image/"),
    "custom_voc": Source("custom_voc", "train_custom.json", "test_custom.json", convert_custom_voc,
                         "a folder with Annotations/, JPEGImages/ and ImageSets/Main/"),
    "custom_coco": Source("custom_coco", "train_custom.json", "test_custom.json", convert_custom_coco,
                          "a folder with train.json, test.json and images/"),
    "custom_csv": Source("custom_csv", "train_custom.json", "test_custom.json", convert_custom_csv,
                         "a folder with train.csv and test.csv"),
}
SYNTHETIC_DIR = "synthetic"  # the built-in dataset is generated inside the prepared folder


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise CSRAError(f"unknown dataset {name!r}; expected one of {', '.join(SOURCES)}")
    return SOURCES[name]


def prepare_dataset(
    name: str, out_dir: str | Path, raw_path: str | Path | None = None, synthetic: SyntheticSpec | None = None
) -> list[str]:
    """Write out_dir/{train_file, test_file, classes.txt} (and the generated images for synthetic) atomically.

    Returns the class names. For synthetic, img_path entries point into out_dir/synthetic/VOC2007/JPEGImages.
    """
    source = get_source(name)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        if source.convert is None:
            if synthetic is None:
                raise CSRAError("dataset synthetic needs its prepare.synthetic settings")
            generate_synthetic(tmp / SYNTHETIC_DIR, synthetic)
            classes = read_classes(tmp / SYNTHETIC_DIR / CLASSES_FILE)
            train, test = convert_voc07(tmp / SYNTHETIC_DIR, classes, path_prefix=out_dir / SYNTHETIC_DIR)
        else:
            if raw_path is None:
                raise CSRAError(f"dataset {name} needs data.raw_path: {source.layout}")
            if not Path(raw_path).is_dir():
                raise CSRAError(f"{raw_path}: raw data folder of dataset {name} not found (data.raw_path)")
            train, test, classes = source.convert(str(raw_path))
        for file_name, items in ((source.train_file, train), (source.test_file, test)):
            if not items:
                raise CSRAError(f"{raw_path}: dataset {name} gives no items for {file_name}")
        write_annotations(tmp / source.train_file, train)
        write_annotations(tmp / source.test_file, test)
        write_classes(tmp / CLASSES_FILE, classes)
    return classes
