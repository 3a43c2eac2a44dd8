import json

import pytest
from helpers import ok

from csra.data.coco import coco_items, convert_coco2014, load_coco
from csra.data.datasets import COCO_CLASSES
from csra.errors import CSRAError

# COCO's 80 category ids run from 1 to 90 with gaps; the JSON lists them out of order here.
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def coco_json(path, images, annotations, categories):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def ann(image_id, category_id, crowd=0):
    return {"id": 1000 * image_id + category_id + 500 * crowd, "image_id": image_id, "category_id": category_id,
            "iscrowd": crowd, "bbox": [0, 0, 1, 1]}


def test_items_sorted_by_image_id_classes_by_category_id(tmp_path):
    categories = [{"id": 9, "name": "person"}, {"id": 2, "name": "cat"}, {"id": 5, "name": "dog"}]
    images = [{"id": 30, "file_name": "c.jpg"}, {"id": 4, "file_name": "a.jpg"}, {"id": 12, "file_name": "b.jpg"}]
    annotations = [ann(30, 9), ann(4, 5), ann(4, 5, crowd=1), ann(30, 2, crowd=1)]  # b.jpg (12) has none
    coco = load_coco(coco_json(tmp_path / "x.json", images, annotations, categories))
    assert coco_items(coco, "root/images/") == [
        {"target": [0, 1, 0], "img_path": "root/images/a.jpg"},
        {"target": [1, 0, 1], "img_path": "root/images/c.jpg"},
    ]


def write_coco2014(root):
    categories = [{"id": i, "name": COCO_CLASSES[k]} for k, i in reversed(list(enumerate(COCO_IDS)))]
    train_images = [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg"},
                    {"id": 3, "file_name": "COCO_train2014_000000000003.jpg"},
                    {"id": 5, "file_name": "COCO_train2014_000000000005.jpg"}]
    coco_json(root / "annotations" / "instances_train2014.json", train_images,
              [ann(9, 90), ann(9, 1, crowd=1), ann(3, 13), ann(3, 13, crowd=1)], categories)
    coco_json(root / "annotations" / "instances_val2014.json",
              [{"id": 42, "file_name": "COCO_val2014_000000000042.jpg"}], [ann(42, 11)], categories)
    return root


def one_hot(*indices):
    return [int(i in indices) for i in range(80)]


def test_convert_coco2014_official_paths_and_targets(tmp_path):
    root = write_coco2014(tmp_path / "COCO2014")
    train, val, classes = convert_coco2014(root)
    assert classes == COCO_CLASSES
    # category 13 (stop sign) is index 11; 90 (toothbrush) is 79; 1 (person) is 0; 11 (fire hydrant) is 10
    assert train == [
        {"target": one_hot(11), "img_path": f"{root}/images/train2014/COCO_train2014_000000000003.jpg"},
        {"target": one_hot(0, 79), "img_path": f"{root}/images/train2014/COCO_train2014_000000000009.jpg"},
    ]
    assert val == [{"target": one_hot(10), "img_path": f"{root}/images/val2014/COCO_val2014_000000000042.jpg"}]


def test_prepare_coco_writes_the_official_files(tmp_path, tiny_params):
    root = write_coco2014(tmp_path / "COCO2014")
    out = tmp_path / "prepared"
    ok("prepare", "coco", "--data-path", str(root), "--out-dir", str(out))
    val = out / "val_coco2014.json"
    assert val.read_text() == json.dumps(
        [{"target": one_hot(10), "img_path": f"{root}/images/val2014/COCO_val2014_000000000042.jpg"}])
    assert len(json.loads((out / "train_coco2014.json").read_text())) == 2
    assert (out / "classes.txt").read_text().splitlines() == COCO_CLASSES


@pytest.mark.parametrize("content, message", [
    ("[]", "expected a COCO object with 'images', 'annotations' and 'categories' lists"),
    ({"images": [{"id": 1}], "annotations": [], "categories": []}, r"images\[0\] needs 'id' and 'file_name'"),
    ({"images": [], "annotations": [], "categories": []}, "'categories' is empty"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [ann(1, 4)], "categories": [{"id": 1, "name": "a"}]},
     "annotations use category id 4, which 'categories' lacks"),
])
def test_malformed_coco_json_names_the_file(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(CSRAError, match=message):
        load_coco(path)


def test_coco2014_needs_80_categories(tmp_path):
    root = tmp_path / "COCO2014"
    coco_json(root / "annotations" / "instances_train2014.json", [], [], [{"id": 1, "name": "person"}])
    with pytest.raises(CSRAError, match="instances_train2014.json: 1 categories, expected COCO's 80"):
        convert_coco2014(root)
