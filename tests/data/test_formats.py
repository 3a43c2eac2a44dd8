import json

import pytest

from csra.data.formats import read_annotations, read_classes, write_annotations
from csra.errors import CSRAError


def write(tmp_path, obj, name="ann.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_round_trip_official_format(tmp_path):
    items = [{"target": [1, -1, 0], "img_path": "a/b/000001.jpg"}]
    path = write_annotations(tmp_path / "x.json", items)
    assert path.read_text() == '[{"target": [1, -1, 0], "img_path": "a/b/000001.jpg"}]'
    assert read_annotations(path, 3, "voc07") == items


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ([], "expected a non-empty JSON list"),
        ([{"target": [1, 0]}], "item 0 has no string 'img_path'"),
        ([{"img_path": "a.jpg", "target": [1, 0.5]}], r"item 0 \('target'\) is not a list of integers"),
        ([{"img_path": "a.jpg", "target": [1, 0]}, {"img_path": "b.jpg", "target": [1]}],
         "item 1 has 1 classes in 'target', expected 2"),
        ([{"img_path": "a.jpg", "target": [1, 99]}], "item 0 has label code 99; voc07 files allow -1, 0, 1"),
        ([{"img_path": "a.jpg", "bbox": [1, 2, 0, 4], "target": [1]}],
         r"item 0 \('bbox'\) is not \[x, y, w, h\] with a positive width and height"),
    ],
)
def test_bad_annotation_files_name_file_and_item(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(CSRAError, match=message) as info:
        read_annotations(path, label_format="voc07")
    assert str(info.value).startswith(str(path))


def test_training_files_must_be_binary(tmp_path):
    path = write(tmp_path, [{"img_path": "a.jpg", "target": [1, -1]}])
    with pytest.raises(CSRAError, match="binary files allow 0, 1"):
        read_annotations(path, label_format="binary")


def test_missing_file_and_class_list(tmp_path):
    with pytest.raises(CSRAError, match="annotation file not found"):
        read_annotations(tmp_path / "none.json")
    (tmp_path / "classes.txt").write_text("a\nb\na\n")
    with pytest.raises(CSRAError, match="duplicate"):
        read_classes(tmp_path / "classes.txt")
