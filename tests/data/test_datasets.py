"""The dataset registry: one entry per dataset, and the one rule for class names."""

import pytest

from csra.data.datasets import COCO_CLASSES, DATASETS, VOC_CLASSES, get_dataset, resolve_classes
from csra.errors import CSRAError


def test_every_entry_names_its_files_codes_and_converter():
    assert set(DATASETS) == {"synthetic", "voc07", "coco", "wider", "custom_voc", "custom_coco", "custom_csv"}
    for entry in DATASETS.values():
        assert entry.label_format in ("voc07", "coco", "wider")
        assert entry.train_file.endswith(".json") and entry.test_file.endswith(".json")
        if entry.converter is not None:  # importable by name; only prepare imports it
            module, function = entry.converter.split(":")
            assert callable(getattr(__import__(module, fromlist=[function]), function))
    assert len(get_dataset("coco").classes) == 80 and get_dataset("voc07").classes == tuple(VOC_CLASSES)
    with pytest.raises(CSRAError, match="unknown dataset 'imagenet'; expected one of synthetic, voc07"):
        get_dataset("imagenet")


def test_classes_txt_wins_and_must_match_fixed_names(tmp_path):
    voc = get_dataset("voc07")
    assert resolve_classes(voc, tmp_path) == VOC_CLASSES  # official files come without a class list
    (tmp_path / "classes.txt").write_text("".join(f"{c}\n" for c in VOC_CLASSES))
    assert resolve_classes(voc, tmp_path) == VOC_CLASSES
    swapped = [VOC_CLASSES[1], VOC_CLASSES[0], *VOC_CLASSES[2:]]
    (tmp_path / "classes.txt").write_text("".join(f"{c}\n" for c in swapped))
    with pytest.raises(CSRAError, match="classes.txt: not the classes of dataset voc07: class 0 is 'bicycle', not "
                                        "'aeroplane'"):
        resolve_classes(voc, tmp_path)
    with pytest.raises(CSRAError, match="classes.txt: not the classes of dataset coco: 20 class names, not 80"):
        resolve_classes(get_dataset("coco"), tmp_path)
    assert COCO_CLASSES[0] == "person"


def test_custom_data_names_its_classes_in_classes_txt(tmp_path):
    with pytest.raises(CSRAError, match="classes.txt: class list not found"):
        resolve_classes(get_dataset("custom_csv"), tmp_path)
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    assert resolve_classes(get_dataset("custom_csv"), tmp_path) == ["cat", "dog"]
