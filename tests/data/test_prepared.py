"""A prepared folder read for a run: the selection images are held out of training (the val file, else a seeded
fraction of the train file), or are the test file under the official protocol."""

import json

import pytest
from PIL import Image

from csra.data.prepared import digest_images, held_out, load_training_data
from csra.errors import CSRAError


@pytest.fixture
def prepared(tmp_path):
    """A custom dataset of 10 real images, class 0 on even images, class 1 on odd ones."""
    paths = []
    for i in range(10):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (8, 8)).save(paths[-1])
    items = [{"target": [1 - i % 2, i % 2], "img_path": p} for i, p in enumerate(paths)]
    (tmp_path / "classes.txt").write_text("even\nodd\n")
    (tmp_path / "train_custom.json").write_text(json.dumps(items[:8]))
    (tmp_path / "test_custom.json").write_text(json.dumps(items[8:]))
    return tmp_path


def names(items):
    return [item["img_path"].rsplit("/", 1)[-1] for item in items]


def test_a_seeded_fraction_of_the_train_file_is_held_out(prepared):
    data = load_training_data("custom_csv", prepared, False, "val", val_fraction=0.25, val_seed=3)
    assert len(data.val_items) == 2 and len(data.train_items) == 6
    assert not set(names(data.val_items)) & set(names(data.train_items))
    assert not set(names(data.val_items)) & {"8.png", "9.png"}  # never the test images
    again = load_training_data("custom_csv", prepared, False, "val", val_fraction=0.25, val_seed=3)
    other = load_training_data("custom_csv", prepared, False, "val", val_fraction=0.25, val_seed=4)
    assert names(again.val_items) == names(data.val_items) != names(other.val_items)
    assert data.selection.split == "val" and "of the 8 images of train_custom.json (seed 3)" in data.selection.source


def test_a_val_file_is_held_out_of_the_train_file(prepared):
    train = json.loads((prepared / "train_custom.json").read_text())
    (prepared / "val_custom.json").write_text(json.dumps(train[:3]))
    data = load_training_data("custom_voc", prepared, False, "val")
    assert names(data.val_items) == ["0.png", "1.png", "2.png"] and len(data.train_items) == 5
    assert data.selection.source == "val_custom.json" and data.label_format == "voc07"


def test_the_official_protocol_validates_on_the_test_file(prepared):
    data = load_training_data("custom_csv", prepared, False, "test")
    assert names(data.val_items) == ["8.png", "9.png"] and len(data.train_items) == 8
    assert data.selection.source == "test_custom.json"


def test_held_out_keeps_one_image_each_side():
    items = [{"img_path": str(i), "target": [1]} for i in range(3)]
    assert [len(part) for part in held_out(items, 0.99, 0)] == [1, 2]
    assert [len(part) for part in held_out(items, 0.01, 0)] == [2, 1]


@pytest.mark.parametrize("count, fraction, held", [
    (7, 0.3, 2),   # 2.1: rounded down
    (9, 0.3, 3),   # 2.7: rounded up, not floored
    (10, 0.25, 2),  # 2.5: Python's round, half to even
    (14, 0.25, 4),  # 3.5: half to even
])
def test_the_held_out_count_is_the_rounded_fraction(count, fraction, held):
    items = [{"img_path": str(i), "target": [1]} for i in range(count)]
    kept, out = held_out(items, fraction, 0)
    assert (len(kept), len(out)) == (count - held, held)


def test_held_out_images_of_a_voc_train_file_keep_its_binary_codes(prepared):
    """A train file holds 0/1 (0: absent); only the test and val files of VOC use 0 for 'difficult, ignored'.
    Images held out of the train file are scored in the train file's codes: their zeros are negatives."""
    data = load_training_data("custom_voc", prepared, False, "val", val_fraction=0.25, val_seed=3)
    assert data.label_format == "coco" and "of the 8 images of train_custom.json" in data.selection.source
    assert any(0 in item["target"] for item in data.val_items)


def test_a_split_digest_gives_its_first_images_that_are_there(prepared):
    """The demo's default: the images a digest lists, by path, less its annotation file, classes.txt and the
    images that are missing."""
    lines = [f"{'0' * 32}  {prepared / 'classes.txt'}", f"{'0' * 32}  {prepared / 'test_custom.json'}",
             f"missing  {prepared / '0.png'}", f"{'0' * 32}  {prepared / '1.png'}", f"{'0' * 32}  {prepared / 'x.png'}",
             f"{'0' * 32}  {prepared / '2.png'}", f"{'0' * 32}  {prepared / '3.png'}"]
    (prepared / "test.md5").write_text("".join(f"{line}\n" for line in lines))
    assert digest_images(prepared / "test.md5", 2) == [prepared / "1.png", prepared / "2.png"]  # x.png is not there
    with pytest.raises(CSRAError, match="val.md5: split digest not found"):
        digest_images(prepared / "val.md5", 2)


def test_images_missing_on_start_are_listed_by_split(prepared):
    (prepared / "1.png").unlink()
    (prepared / "9.png").unlink()
    data = load_training_data("custom_csv", prepared, skip_bad=True, selection="test")
    assert names(data.train_items) == ["0.png", "2.png", "3.png", "4.png", "5.png", "6.png", "7.png"]
    assert data.skipped == (("train", str(prepared / "1.png"), "missing"), ("selection", str(prepared / "9.png"),
                                                                            "missing"))
