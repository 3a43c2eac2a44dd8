"""Validation of prepared data: `csra prepare … --check`, the train stage's start, and csra.data.check itself."""

import io
import json

import numpy as np
import pytest
from helpers import assert_one_line_error, edit_params, ok, run
from PIL import Image

from csra.data.check import check_prepared
from csra.data.prepared import usable_items
from csra.errors import CSRAError


def tiny_jpeg(path):
    Image.new("RGB", (16, 16), (0, 128, 255)).save(path, quality=90)
    return path


def raw_csv(root, train, test, classes=None, broken=()):
    """A custom_csv folder: rows 'name,labels'; every image except those in broken (name → bytes) is a real JPEG."""
    root.mkdir()
    for rows, split in ((train, "train"), (test, "test")):
        (root / f"{split}.csv").write_text("".join(f"{name},{labels}\n" for name, labels in rows))
        for name, _ in rows:
            if name in broken:
                (root / name).write_bytes(broken[name])
            elif not name.startswith("missing"):
                tiny_jpeg(root / name)
    if classes:
        (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    return root


def prepare_check(root):
    return run("prepare", "custom_csv", "--data-path", str(root), "--out-dir", "prepared", "--check")


def test_clean_data_passes(tiny_params, tmp_path):
    (tmp_path / "data/raw").mkdir(parents=True)  # where DVC tracks raw data: no warning about the folder either
    root = raw_csv(tmp_path / "data/raw/mini", [("a.jpg", "x"), ("b.jpg", "y")], [("c.jpg", "x;y")])
    code, output = prepare_check(root)
    assert code == 0, output
    assert "check: every image readable" in output and "warning" not in output


def test_missing_images_counted_and_first_ones_named(tiny_params, tmp_path):
    train = [("a.jpg", "x")] + [(f"missing{i}.jpg", "x") for i in range(4)] + [("missing0.jpg", "x")]
    root = raw_csv(tmp_path / "raw", train, [("c.jpg", "x")])
    code, output = prepare_check(root)
    assert_one_line_error(code, output, f"prepared/train_custom.json: 4 of 5 image files missing: {root}/missing0.jpg, "
                                        f"{root}/missing1.jpg, {root}/missing2.jpg and 1 more")
    assert (tmp_path / "prepared" / "train_custom.json").is_file()  # the conversion itself is written whole


def test_unreadable_and_truncated_images_named_with_the_reason(tiny_params, tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    broken = {"text.jpg": b"not an image", "cut.jpg": jpeg[: len(jpeg) * 2 // 3]}  # a download cut short
    root = raw_csv(tmp_path / "raw", [("a.jpg", "x")], [("text.jpg", "x"), ("cut.jpg", "x")], broken=broken)
    code, output = prepare_check(root)
    assert_one_line_error(code, output, f"prepared/test_custom.json: 2 unreadable images: {root}/text.jpg (not an "
                                        f"image PIL decodes), {root}/cut.jpg (image file is truncated")


def test_class_without_positive_is_a_warning(tiny_params, tmp_path):
    root = raw_csv(tmp_path / "raw", [("a.jpg", "x"), ("b.jpg", "y")], [("c.jpg", "x")], classes=["x", "y", "z"])
    code, output = prepare_check(root)
    assert code == 0, output
    assert "warning: prepared/train_custom.json: no positive image for 1 classes: z" in output
    assert "warning: prepared/test_custom.json: no positive image for 2 classes: y, z" in output


def write_prepared(folder, classes, train, test):
    folder.mkdir()
    (folder / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "test.json").write_text(json.dumps(test))
    return folder


def test_target_outside_the_allowed_codes(tmp_path):
    img = str(tiny_jpeg(tmp_path / "a.jpg"))
    folder = write_prepared(tmp_path / "p", ["x", "y"], [{"target": [1, 0], "img_path": img}],
                            [{"target": [1, 99], "img_path": img}])
    with pytest.raises(CSRAError, match=r"test.json: item 0 has label code 99; voc07 files allow -1, 0, 1"):
        check_prepared(folder, "train.json", "test.json", "voc07")
    assert check_prepared(folder, "train.json", "test.json", "wider").errors == []


def test_class_count_mismatch(tmp_path):
    img = str(tiny_jpeg(tmp_path / "a.jpg"))
    folder = write_prepared(tmp_path / "p", ["x", "y", "z"], [{"target": [1, 0], "img_path": img}],
                            [{"target": [1, 0], "img_path": img}])
    with pytest.raises(CSRAError, match=r"train.json: 2 classes per target, but classes.txt lists 3"):
        check_prepared(folder, "train.json", "test.json", "coco")


def test_train_start_missing_images_fail_or_skip(tmp_path, capsys):
    img = str(tiny_jpeg(tmp_path / "a.jpg"))
    files = {"train.json": [{"target": [1], "img_path": img}, {"target": [0], "img_path": str(tmp_path / "no.jpg")}],
             "test.json": [{"target": [1], "img_path": img}]}
    with pytest.raises(CSRAError, match=r"train.json: 1 of 2 image files missing: .*no.jpg \(data.bad_images: skip"):
        usable_items(tmp_path, files, ["x"], skip=False)
    train, test = usable_items(tmp_path, files, ["x"], skip=True)
    assert train == files["train.json"][:1] and test == files["test.json"]
    assert "train.json: 1 of 2 image files missing" in capsys.readouterr().err


def test_train_stage_checks_on_start(tiny_params):
    ok("prepare")
    edit_params(tiny_params, **{"data.bad_images": "fail", "data.selection": "test"})  # train on all 24
    first = sorted((tiny_params.parent / "data/prepared/synthetic/VOC2007/JPEGImages").glob("*.jpg"))[0]
    first.unlink()
    assert_one_line_error(*run("train"), "trainval_voc07.json: 1 of 24 image files missing", first.name)
    edit_params(tiny_params, **{"data.bad_images": "sometimes"})
    assert_one_line_error(*run("train"), "params.yaml: data.bad_images must be one of skip, fail, got 'sometimes'")


def test_train_reads_official_files_without_a_class_list(tiny_params, tmp_path):
    prepared = tmp_path / "official"
    prepared.mkdir()
    item = {"target": [0] * 19 + [1], "img_path": str(tmp_path / "VOC2007/JPEGImages/000001.jpg")}
    for name in ("trainval_voc07.json", "test_voc07.json"):
        (prepared / name).write_text(json.dumps([item]))
    edit_params(tiny_params, **{"data.dataset": "voc07", "data.prepared_dir": str(prepared),
                                "data.bad_images": "fail", "data.selection": "test"})
    # the 20 VOC classes are known, so the run gets as far as the image check
    assert_one_line_error(*run("train"), "trainval_voc07.json: 1 of 1 image files missing: ", "000001.jpg")
