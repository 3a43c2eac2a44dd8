"""The datasets the pipeline knows: how each is prepared, its annotation files and its label format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from csra.data.annotations import CLASSES_FILE, read_classes, write_annotations, write_classes
from csra.data.classes import LABEL_FORMATS, VOC_CLASSES
from csra.data.synthetic import SyntheticSpec, generate_synthetic
from csra.data.voc import convert_voc07
from csra.errors import CSRAError
from csra.fileio import atomic_dir


@dataclass(frozen=True)
class Source:
    name: str
    train_file: str
    test_file: str

    @property
    def label_format(self) -> str:
        """Label codes of its test file: voc07 | coco | wider."""
        return LABEL_FORMATS[self.name]


SOURCES: dict[str, Source] = {
    "synthetic": Source("synthetic", "trainval_voc07.json", "test_voc07.json"),
    "voc07": Source("voc07", "trainval_voc07.json", "test_voc07.json"),
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
        if name == "synthetic":
            if synthetic is None:
                raise CSRAError("dataset synthetic needs its prepare.synthetic settings")
            generate_synthetic(tmp / SYNTHETIC_DIR, synthetic)
            classes = read_classes(tmp / SYNTHETIC_DIR / CLASSES_FILE)
            trainval, test = convert_voc07(tmp / SYNTHETIC_DIR, classes, path_prefix=out_dir / SYNTHETIC_DIR)
        else:
            if raw_path is None:
                raise CSRAError(f"dataset {name} needs data.raw_path: the folder of the raw dataset")
            if not Path(raw_path).is_dir():
                raise CSRAError(f"{raw_path}: raw data folder of dataset {name} not found (data.raw_path)")
            classes = list(VOC_CLASSES)
            trainval, test = convert_voc07(raw_path, classes)
        write_annotations(tmp / source.train_file, trainval)
        write_annotations(tmp / source.test_file, test)
        write_classes(tmp / CLASSES_FILE, classes)
    return classes
