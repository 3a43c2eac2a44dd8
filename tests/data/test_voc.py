import json
from pathlib import Path

import pytest

from csra.data.voc import convert_voc07, voc_target
from csra.errors import CSRAError

CLASSES = ["cat", "dog", "person"]


def write_voc(root: Path, annotations: dict[str, list[tuple[str, int]]], sets: dict[str, list[str]]) -> Path:
    voc = root / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for image_id, objects in annotations.items():
        body = "".join(
            f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>1</xmin></bndbox></object>"
            for n, d in objects
        )
        (voc / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{body}</annotation>")
    for name, ids in sets.items():
        (voc / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def test_label_codes_per_class():
    objects = [("cat", False), ("cat", True), ("dog", True), ("dog", True)]
    # cat: one non-difficult → 1; dog: all difficult → 0; person: none → -1
    assert voc_target(objects, CLASSES, Path("x.xml")) == [1, 0, -1]


def test_convert_trainval_binary_test_ternary_sorted(tmp_path):
    root = write_voc(
        tmp_path / "VOCdevkit",
        {
            "000007": [("dog", 0), ("dog", 1)],
            "000002": [("cat", 1), ("person", 0)],
            "000005": [("person", 0), ("person", 0)],
            "000009": [("cat", 1)],
        },
        {"train": ["000007"], "val": ["000002"], "test": ["000009", "000005"]},
    )
    trainval, test = convert_voc07(root, CLASSES)
    prefix = f"{root}/VOC2007/JPEGImages/"
    assert trainval == [
        {"target": [0, 0, 1], "img_path": prefix + "000002.jpg"},
        {"target": [0, 1, 0], "img_path": prefix + "000007.jpg"},
    ]
    assert test == [
        {"target": [-1, -1, 1], "img_path": prefix + "000005.jpg"},
        {"target": [0, -1, -1], "img_path": prefix + "000009.jpg"},
    ]
    assert list(trainval[0]) == ["target", "img_path"]  # the official key order
    assert json.dumps(trainval).startswith('[{"target": [0, 0, 1], "img_path": ')


def test_unknown_class_names_file_and_class(tmp_path):
    root = write_voc(tmp_path, {"000001": [("horse", 0)]}, {"train": ["000001"], "val": [], "test": []})
    with pytest.raises(CSRAError, match=r"000001\.xml: class 'horse' is not in the class list"):
        convert_voc07(root, CLASSES)


def test_listed_image_without_annotation(tmp_path):
    root = write_voc(tmp_path, {}, {"train": ["000003"], "val": [], "test": []})
    with pytest.raises(CSRAError, match=r"000003\.xml: image 000003 is listed"):
        convert_voc07(root, CLASSES)


def test_missing_voc_folder(tmp_path):
    with pytest.raises(CSRAError, match="no VOC2007 folder"):
        convert_voc07(tmp_path, CLASSES)


def test_image_without_objects_dropped_as_the_official_script_or_kept(tmp_path):
    root = write_voc(tmp_path, {"000001": [("cat", 0)], "000002": []},
                     {"train": ["000001", "000002"], "val": [], "test": ["000002"]})
    trainval, test = convert_voc07(root, CLASSES, keep_unlabelled=False)
    assert [item["img_path"][-10:] for item in trainval] == ["000001.jpg"] and test == []
    trainval, test = convert_voc07(root, CLASSES)
    assert [item["target"] for item in trainval] == [[1, 0, 0], [0, 0, 0]]
    assert test == [{"target": [-1, -1, -1], "img_path": f"{root}/VOC2007/JPEGImages/000002.jpg"}]
