import json

import pytest
from helpers import ok

from csra.data.custom import convert_custom_coco, convert_custom_csv, convert_custom_voc
from csra.errors import CSRAError


def write_custom_voc(root, annotations, sets, filenames=None):
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for image_id, objects in annotations.items():
        name = f"<filename>{filenames[image_id]}</filename>" if filenames and image_id in filenames else ""
        body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult></object>" for n, d in objects)
        (root / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{name}{body}</annotation>")
    for split, ids in sets.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def test_custom_voc_discovers_sorted_classes_and_keeps_voc_codes(tmp_path):
    root = write_custom_voc(
        tmp_path / "mine",
        {"b2": [("zebra", 0), ("zebra", 1), ("ant", 1)], "a1": [("ant", 1), ("ant", 1), ("moth", 0)],
         "c3": [("moth", 0), ("zebra", 1)]},
        {"train": ["b2", "a1"], "test": ["c3"]},
        filenames={"a1": "a1.png"},
    )
    train, test, classes = convert_custom_voc(root)
    assert classes == ["ant", "moth", "zebra"]
    assert train == [
        {"target": [0, 1, 0], "img_path": f"{root}/JPEGImages/a1.png"},  # ant difficult only → 0
        {"target": [0, 0, 1], "img_path": f"{root}/JPEGImages/b2.jpg"},
    ]
    assert test == [{"target": [-1, 1, 0], "img_path": f"{root}/JPEGImages/c3.jpg"}]


def test_custom_voc_class_list_given_with_val_split(tmp_path):
    root = write_custom_voc(tmp_path / "mine", {"x": [("b", 0)], "y": [("a", 0)], "z": [("b", 0)]},
                            {"train": ["x"], "val": ["y"], "test": ["z"]})
    (root / "classes.txt").write_text("b\na\nc\n")
    train, test, classes = convert_custom_voc(root)
    assert classes == ["b", "a", "c"]
    assert [t["target"] for t in train] == [[1, 0, 0], [0, 1, 0]]
    assert test[0]["target"] == [1, -1, -1]


def coco(images, annotations, categories):
    return json.dumps({"images": images, "annotations": annotations, "categories": categories})


def test_custom_coco_any_categories(tmp_path):
    categories = [{"id": 40, "name": "bolt"}, {"id": 3, "name": "nut"}]
    (tmp_path / "train.json").write_text(coco(
        [{"id": 2, "file_name": "p/2.jpg"}, {"id": 1, "file_name": "p/1.jpg"}, {"id": 3, "file_name": "p/3.jpg"}],
        [{"id": 1, "image_id": 2, "category_id": 40}, {"id": 2, "image_id": 1, "category_id": 3},
         {"id": 3, "image_id": 1, "category_id": 40}], categories))
    (tmp_path / "test.json").write_text(coco([{"id": 7, "file_name": "q.jpg"}],
                                             [{"id": 1, "image_id": 7, "category_id": 3}], categories[::-1]))
    train, test, classes = convert_custom_coco(tmp_path)
    assert classes == ["nut", "bolt"]
    assert train == [{"target": [1, 1], "img_path": f"{tmp_path}/images/p/1.jpg"},
                     {"target": [0, 1], "img_path": f"{tmp_path}/images/p/2.jpg"}]
    assert test == [{"target": [1, 0], "img_path": f"{tmp_path}/images/q.jpg"}]


def test_custom_coco_splits_need_the_same_categories(tmp_path):
    (tmp_path / "train.json").write_text(coco([], [], [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]))
    (tmp_path / "test.json").write_text(coco([], [], [{"id": 1, "name": "a"}]))
    with pytest.raises(CSRAError, match="test.json: 1 categories differ from the 2 of .*train.json"):
        convert_custom_coco(tmp_path)


def test_custom_csv_row_order_header_and_empty_labels(tmp_path):
    (tmp_path / "train.csv").write_text("path,labels\nimgs/b.jpg,dog;cat\nimgs/a.jpg,\n/abs/c.png, cat \n")
    (tmp_path / "test.csv").write_text("imgs/d.jpg,bird\n")
    train, test, classes = convert_custom_csv(tmp_path)
    assert classes == ["bird", "cat", "dog"]
    assert train == [
        {"target": [0, 1, 1], "img_path": f"{tmp_path}/imgs/b.jpg"},
        {"target": [0, 0, 0], "img_path": f"{tmp_path}/imgs/a.jpg"},
        {"target": [0, 1, 0], "img_path": "/abs/c.png"},
    ]
    assert test == [{"target": [1, 0, 0], "img_path": f"{tmp_path}/imgs/d.jpg"}]


@pytest.mark.parametrize("train, message", [
    ("a.jpg,cat,dog\n", r"train.csv:1: expected 'path,label1;label2', got 'a.jpg,cat,dog'"),
    ("a.jpg,cat\nb.jpg,horse\n", r"train.csv:2: label 'horse' is not in classes.txt"),
])
def test_custom_csv_bad_rows_name_file_and_line(tmp_path, train, message):
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    (tmp_path / "train.csv").write_text(train)
    (tmp_path / "test.csv").write_text("c.jpg,dog\n")
    with pytest.raises(CSRAError, match=message):
        convert_custom_csv(tmp_path)


def test_prepare_custom_csv_writes_json_and_class_list(tmp_path, tiny_params):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "train.csv").write_text("x.jpg,b\n")
    (raw / "test.csv").write_text("y.jpg,a;b\n")
    out = tmp_path / "prepared"
    ok("prepare", "custom_csv", "--data-path", str(raw), "--out-dir", str(out))
    assert (out / "train_custom.json").read_text() == f'[{{"target": [0, 1], "img_path": "{raw}/x.jpg"}}]'
    assert (out / "test_custom.json").read_text() == f'[{{"target": [1, 1], "img_path": "{raw}/y.jpg"}}]'
    assert (out / "classes.txt").read_text() == "a\nb\n"
