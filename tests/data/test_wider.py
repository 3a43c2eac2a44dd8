import json

import pytest
from helpers import ok

from csra.data.datasets import WIDER_ATTRIBUTES
from csra.data.wider import convert_wider, wider_items
from csra.errors import CSRAError

A = [1, -1, 0, 1, -1, -1, 0, 0, 1, -1, 1, 0, -1, 1]  # raw WIDER attributes: 1 yes, -1 no, 0 unspecified
B = [-1, 1, 1, 0, 0, -1, -1, 1, 1, 0, -1, -1, 1, 0]


def write_wider(root):
    ann = root / "Annotations"
    ann.mkdir(parents=True)
    trainval = {"images": [
        {"file_name": "12--Group/12_Group_b.jpg", "targets": [
            {"bbox": [10.5, 20, 30, 60], "attribute": A},
            {"bbox": [50, 5, 20.25, 40], "attribute": B},
        ]},
        {"file_name": "0--Parade/0_Parade_a.jpg", "targets": [{"bbox": [0, 0, 8, 16], "attribute": B}]},
    ]}
    test = {"images": [{"file_name": "1--Handshaking/1_Handshaking_c.jpg", "targets": [
        {"bbox": [1, 2, 3, 4], "attribute": A}, {"bbox": [5, 6, 7, 8], "attribute": B}]}]}
    (ann / "wider_attribute_trainval.json").write_text(json.dumps(trainval))
    (ann / "wider_attribute_test.json").write_text(json.dumps(test))
    return root


def test_one_item_per_person_in_file_order(tmp_path):
    root = write_wider(tmp_path / "WIDER")
    trainval, test, attributes = convert_wider(root)
    assert attributes == WIDER_ATTRIBUTES
    a_trainval = [1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1]
    b_trainval = [0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0]
    assert trainval == [
        {"img_path": f"{root}/Image/12--Group/12_Group_b.jpg", "bbox": [10.5, 20, 30, 60], "target": a_trainval},
        {"img_path": f"{root}/Image/12--Group/12_Group_b.jpg", "bbox": [50, 5, 20.25, 40], "target": b_trainval},
        {"img_path": f"{root}/Image/0--Parade/0_Parade_a.jpg", "bbox": [0, 0, 8, 16], "target": b_trainval},
    ]
    assert test == [
        {"img_path": f"{root}/Image/1--Handshaking/1_Handshaking_c.jpg", "bbox": [1, 2, 3, 4],
         "target": [1, 0, 99, 1, 0, 0, 99, 99, 1, 0, 1, 99, 0, 1]},
        {"img_path": f"{root}/Image/1--Handshaking/1_Handshaking_c.jpg", "bbox": [5, 6, 7, 8],
         "target": [0, 1, 1, 99, 99, 0, 0, 1, 1, 99, 0, 0, 1, 99]},
    ]


def test_prepare_wider_writes_the_official_files(tmp_path, tiny_params):
    root = write_wider(tmp_path / "WIDER")
    out = tmp_path / "prepared"
    ok("prepare", "wider", "--data-path", str(root), "--out-dir", str(out))
    text = (out / "test_wider.json").read_text()
    assert text == json.dumps(convert_wider(root)[1])
    assert text.startswith(f'[{{"img_path": "{root}/Image/1--Handshaking/1_Handshaking_c.jpg", "bbox": [1, 2, 3, 4]')
    assert len(json.loads((out / "trainval_wider.json").read_text())) == 3
    assert (out / "classes.txt").read_text().split()[:3] == ["Male", "longHair", "sunglass"]


@pytest.mark.parametrize("person, message", [
    ({"attribute": A}, r"images\[0\]\.targets\[0\] needs a 'bbox'"),
    ({"bbox": [0, 0, 1, 1], "attribute": [2] * 14}, "needs an 'attribute' list of -1, 0 and 1"),
    ({"bbox": [0, 0, 1, 1], "attribute": [1] * 13}, "has 13 attributes, expected 14"),
])
def test_malformed_person_names_file_and_entry(tmp_path, person, message):
    path = tmp_path / "wider_attribute_trainval.json"
    path.write_text(json.dumps({"images": [{"file_name": "a.jpg", "targets": [person]}]}))
    with pytest.raises(CSRAError, match=message):
        wider_items(path, "Image", 0)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(CSRAError, match="wider_attribute_trainval.json: WIDER-Attribute annotation file not found"):
        convert_wider(tmp_path)
