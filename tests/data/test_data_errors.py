"""User errors of the data files, each a one-line CSRAError: annotation, class and scores files, and prepared
folders a run cannot train on."""

import json

import pytest
from errorwalk import ITEMS, Walk, write

from csra.data import datasets, formats

walk = Walk()
says = walk.says


# --- annotation, class and scores files --------------------------------------------------------------------------


def annotations(tmp, content, **kwargs):
    formats.read_annotations(write(tmp / "test.json", content), **kwargs)


@says("test.json: annotation file not found")
def annotations_missing(tmp):
    formats.read_annotations(tmp / "test.json")


@says("test.json: not valid JSON")
def annotations_not_json(tmp):
    annotations(tmp, "[{")


@says("test.json: not UTF-8 text")
def annotations_not_utf8(tmp):
    annotations(tmp, b"\xff\xfe[")


@says("test.json: expected a non-empty JSON list of {'img_path', 'target'} items")
def annotations_empty_list(tmp):
    annotations(tmp, [])


@says("test.json: item 1 has no string 'img_path'")
def annotations_item_without_img_path(tmp):
    annotations(tmp, [{"target": [1], "img_path": "a.jpg"}, {"target": [1]}])


@says("test.json: item 1 ('target') is not a list of integers")
def annotations_target_not_integers(tmp):
    annotations(tmp, [{"target": [1], "img_path": "a.jpg"}, {"target": ["1"], "img_path": "b.jpg"}])


@says("test.json: item 0 has 2 classes in 'target', expected 3")
def annotations_class_count_differs(tmp):
    annotations(tmp, [{"target": [1, 0], "img_path": "a.jpg"}], num_classes=3)


@says("test.json: item 1 ('bbox') is not [x, y, w, h] with a positive width and height")
def annotations_bad_bbox(tmp):
    annotations(tmp, [{"target": [1], "img_path": "a.jpg"}, {"target": [1], "img_path": "b.jpg", "bbox": [0, 0, 0, 5]}])


@says("test.json: item 1 has label code -1; binary files allow 0, 1")
def annotations_bad_label_code(tmp):
    annotations(tmp, [{"target": [0, 1], "img_path": "a.jpg"}, {"target": [-1, 1], "img_path": "b.jpg"}],
                label_format="binary")


@says("classes.txt: class list not found (one class name per line)")
def classes_missing(tmp):
    formats.read_classes(tmp / "classes.txt")


@says("classes.txt: class list is empty (one class name per line)")
def classes_empty(tmp):
    formats.read_classes(write(tmp / "classes.txt", "\n\n"))


@says("classes.txt: class list has duplicate name 'a'; expected each name once")
def classes_duplicate(tmp):
    formats.read_classes(write(tmp / "classes.txt", "a\nb\na\n"))


@says("classes.txt: not UTF-8 text")
def classes_not_utf8(tmp):
    formats.read_classes(write(tmp / "classes.txt", "caf\xe9\n".encode("latin-1")))


@says("classes.txt: not the classes of dataset voc07: 1 class names, not 20")
def classes_not_the_datasets(tmp):
    write(tmp / "classes.txt", "cat\n")
    datasets.resolve_classes(datasets.get_dataset("voc07"), tmp)


@says("classes.txt: class list not found (dataset custom_csv names its classes there")
def classes_of_custom_data_missing(tmp):
    datasets.resolve_classes(datasets.get_dataset("custom_csv"), tmp)


def scores(tmp, content, num_classes=2):
    formats.read_scores(write(tmp / "scores.json", content), ITEMS, num_classes)


@says("scores.json: not valid JSON")
def scores_not_json(tmp):
    scores(tmp, "[1, 2")


@says("scores.json: 1 entries, but the annotation file has 2 images")
def scores_too_few_entries(tmp):
    scores(tmp, [{"file_name": "a", "scores": [0.1, 0.2]}])


@says("scores.json: entry 1 has no list of numbers under 'scores'")
def scores_entry_without_scores(tmp):
    scores(tmp, [{"file_name": "a", "scores": [0.1, 0.2]}, {"file_name": "b"}])


@says("scores.json: entry 1 has no list of numbers under 'scores'")
def scores_not_numbers(tmp):
    scores(tmp, [{"file_name": "a", "scores": [0.1, 0.2]}, {"file_name": "b", "scores": [0.1, "0.2"]}])


@says("scores.json: entry 1 has 1 scores, expected 2 classes")
def scores_class_count_differs(tmp):
    scores(tmp, [{"file_name": "a", "scores": [0.1, 0.2]}, {"file_name": "b", "scores": [0.1]}])


@says("scores.json: entry 0 is 'b' but annotation item 0 is 'a'; scores must follow the annotation order")
def scores_in_another_order(tmp):
    scores(tmp, [{"file_name": "b", "scores": [0.1, 0.2]}, {"file_name": "a", "scores": [0.1, 0.2]}])



def two_scores(first, second="0.2"):
    """Scores whose bad ones are off the diagonal, entry 0 class 1 and entry 1 class 0: a swap shows."""
    return f'[{{"file_name": "a", "scores": [0.1, {first}]}}, {{"file_name": "b", "scores": [{second}, 0.2]}}]'


@says("scores.json: entry 0 has score nan for class 1", "finite and in [0, 1]")
def scores_nan(tmp):
    scores(tmp, two_scores("NaN"))


@says("scores.json: entry 1 has score inf for class 0")
def scores_infinite(tmp):
    scores(tmp, two_scores("0.3", "Infinity"))


@says("scores.json: entry 0 has score 3.5 for class 1", "(sigmoid scores)")
def scores_out_of_range(tmp):
    scores(tmp, two_scores("3.5"))


@says("test.json: item 0 ('target') is not a list of integers")
def annotations_target_of_booleans(tmp):
    annotations(tmp, [{"target": [True, False], "img_path": "a.jpg"}])


def prepared_folder(tmp, test_targets):
    """A prepared custom dataset of two real images: train targets [1, 0] and [0, 1]."""
    from PIL import Image

    paths = [str(tmp / f"{n}.png") for n in ("a", "b")]
    for path in paths:
        Image.new("RGB", (8, 8)).save(path)
    write(tmp / "classes.txt", "cat\ndog\n")
    write(tmp / "train_custom.json", [{"target": t, "img_path": p} for t, p in zip([[1, 0], [0, 1]], paths)])
    write(tmp / "test_custom.json", [{"target": t, "img_path": p} for t, p in zip(test_targets, paths)])
    return tmp


@says("the validation images (test_custom.json): no positive label in any of its 2 images")
def validation_without_any_positive(tmp):
    from csra.data.prepared import load_training_data

    load_training_data("custom_csv", prepared_folder(tmp, [[0, 0], [0, 0]]), False, selection="test")


@says("train_custom.json: no training image left to read")
def no_training_image_left(tmp):
    from csra.data.prepared import load_training_data

    folder = prepared_folder(tmp, [[1, 0], [0, 1]])
    write(folder / "train_custom.json", [{"target": [1, 0], "img_path": str(tmp / "gone.png")}])
    load_training_data("custom_csv", folder, True, selection="test")


@says("train_custom.json: 1 image(s): too few to hold out a validation split")
def too_few_images_to_hold_out(tmp):
    from csra.data.prepared import load_training_data

    folder = prepared_folder(tmp, [[1, 0], [0, 1]])
    write(folder / "train_custom.json", json.loads((folder / "train_custom.json").read_text())[:1])
    load_training_data("custom_csv", folder, False, selection="val")


@says("/test_custom.json: 1 of 2 image files missing", "gone.png", "(data.bad_images: skip leaves them out)")
def validation_image_missing(tmp):
    from csra.data.prepared import load_training_data

    folder = prepared_folder(tmp, [[1, 0], [0, 1]])
    items = json.loads((folder / "test_custom.json").read_text())
    items[1]["img_path"] = str(tmp / "gone.png")
    write(folder / "test_custom.json", items)
    load_training_data("custom_csv", folder, False, selection="test")


@says("/train_custom.json (held-out split): 1 of 1 image files missing", "gone.png")
def held_out_image_missing(tmp):
    from csra.data.prepared import held_out, load_training_data

    folder = prepared_folder(tmp, [[1, 0], [0, 1]])
    items = json.loads((folder / "train_custom.json").read_text())
    held_out(items, 0.5, 3)[1][0]["img_path"] = str(tmp / "gone.png")  # the one image held out of training
    write(folder / "train_custom.json", items)
    load_training_data("custom_csv", folder, False, selection="val", val_fraction=0.5, val_seed=3)


@pytest.mark.parametrize("name", sorted(walk.cases))
def test_each_user_error_is_a_one_line_csra_error(name, tmp_path):
    walk.check(name, tmp_path)
