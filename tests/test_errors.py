"""Every user error is a CSRAError with a one-line message (what the CLI prints after `error: `): a walk over the
user-facing cases of each layer — converters, annotation, class and scores files, params, checkpoints, resume,
images, model settings — with the malformed input each one meets in practice."""

import functools
import json
import os
import pickle

import pytest
import torch
import yaml
from conftest import REPO

from csra.data import coco, custom, formats, prepare, registry, voc, wider
from csra.data.loading import list_images, load_image
from csra.deploy.scoring import class_thresholds
from csra.errors import CSRAError, describe_difference
from csra.evaluate.predict import resolve_device
from csra.model.checkpoints import ModelOptions, load_checkpoint, load_model, save_checkpoint
from csra.model.network import ModelConfig, build_model
from csra.train.state import find_resume
from stages import tracking
from stages.params import load_params

CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


# --- converters: VOC2007, COCO 2014, WIDER-Attribute, custom VOC / COCO / CSV ------------------------------------
def voc_root(tmp, xml="<annotation><object><name>cat</name><difficult>0</difficult></object></annotation>",
             ids="000001\n"):
    root = tmp / "VOCdevkit"
    write(root / "VOC2007" / "Annotations" / "000001.xml", xml)
    for split in ("train", "val", "test"):
        write(root / "VOC2007" / "ImageSets" / "Main" / f"{split}.txt", ids)
    return root


@case
def voc_without_voc2007_folder(tmp):
    voc.convert_voc07(tmp, ["cat"])


@case
def voc_broken_xml(tmp):
    voc.convert_voc07(voc_root(tmp, xml="<annotation><object>"), ["cat"])


@case
def voc_object_without_name(tmp):
    voc.convert_voc07(voc_root(tmp, xml="<annotation><object><difficult>0</difficult></object></annotation>"), ["cat"])


@case
def voc_difficult_not_0_or_1(tmp):
    xml = "<annotation><object><name>cat</name><difficult>yes</difficult></object></annotation>"
    voc.convert_voc07(voc_root(tmp, xml=xml), ["cat"])


@case
def voc_unknown_class(tmp):
    voc.convert_voc07(voc_root(tmp), ["dog"])


@case
def voc_listed_image_without_annotation(tmp):
    voc.convert_voc07(voc_root(tmp, ids="000001\n000002\n"), ["cat"])


@case
def voc_missing_image_set(tmp):
    root = voc_root(tmp)
    (root / "VOC2007" / "ImageSets" / "Main" / "test.txt").unlink()
    voc.convert_voc07(root, ["cat"])


@case
def voc_image_set_not_utf8(tmp):
    voc.convert_voc07(voc_root(tmp, ids=b"\xff\xfe0\x000\x00\n"), ["cat"])


def coco_file(tmp, content):
    return write(tmp / "instances.json", content)


@case
def coco_not_json(tmp):
    coco.load_coco(coco_file(tmp, "{'images': []"))


@case
def coco_missing_file(tmp):
    coco.load_coco(tmp / "instances.json")


@case
def coco_not_an_object(tmp):
    coco.load_coco(coco_file(tmp, []))


@case
def coco_image_without_file_name(tmp):
    coco.load_coco(coco_file(tmp, {"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))


@case
def coco_no_categories(tmp):
    coco.load_coco(coco_file(tmp, {"images": [], "annotations": [], "categories": []}))


@case
def coco_unknown_category(tmp):
    coco.load_coco(coco_file(tmp, {"images": [{"id": 1, "file_name": "a.jpg"}],
                                   "annotations": [{"id": 1, "image_id": 1, "category_id": 7}],
                                   "categories": [{"id": 1, "name": "a"}]}))


@case
def coco_category_id_not_a_number(tmp):
    coco.load_coco(coco_file(tmp, {"images": [{"id": 1, "file_name": "a.jpg"}],
                                   "annotations": [{"id": 1, "image_id": 1, "category_id": [1]}],
                                   "categories": [{"id": 1, "name": "a"}]}))


@case
def coco2014_with_too_few_categories(tmp):
    write(tmp / "annotations" / "instances_train2014.json",
          {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]})
    coco.convert_coco2014(tmp)


def wider_file(tmp, images):
    return write(tmp / "wider.json", {"images": images} if images is not None else [])


PERSON = {"bbox": [1, 2, 3, 4], "attribute": [1] * 14}


@case
def wider_not_an_object(tmp):
    wider.wider_items(wider_file(tmp, None), "Image", 0)


@case
def wider_image_without_targets(tmp):
    wider.wider_items(wider_file(tmp, [{"file_name": "a.jpg"}]), "Image", 0)


@case
def wider_person_without_bbox(tmp):
    wider.wider_items(wider_file(tmp, [{"file_name": "a.jpg", "targets": [{"attribute": [1] * 14}]}]), "Image", 0)


@case
def wider_attribute_code_2(tmp):
    person = {**PERSON, "attribute": [2] * 14}
    wider.wider_items(wider_file(tmp, [{"file_name": "a.jpg", "targets": [person]}]), "Image", 0)


@case
def wider_attribute_not_a_number(tmp):
    person = {**PERSON, "attribute": [[1]] * 14}
    wider.wider_items(wider_file(tmp, [{"file_name": "a.jpg", "targets": [person]}]), "Image", 0)


@case
def wider_13_attributes(tmp):
    person = {**PERSON, "attribute": [1] * 13}
    wider.wider_items(wider_file(tmp, [{"file_name": "a.jpg", "targets": [person]}]), "Image", 0)


@case
def wider_missing_annotation_file(tmp):
    wider.convert_wider(tmp)


@case
def custom_voc_without_annotations(tmp):
    custom.convert_custom_voc(tmp)


@case
def custom_voc_without_objects(tmp):
    write(tmp / "Annotations" / "a.xml", "<annotation></annotation>")
    write(tmp / "ImageSets" / "Main" / "train.txt", "a\n")
    write(tmp / "ImageSets" / "Main" / "test.txt", "a\n")
    custom.convert_custom_voc(tmp)


def coco_split(categories):
    return {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1}],
            "categories": categories}


@case
def custom_coco_splits_with_other_categories(tmp):
    write(tmp / "train.json", coco_split([{"id": 1, "name": "a"}]))
    write(tmp / "test.json", coco_split([{"id": 1, "name": "b"}]))
    custom.convert_custom_coco(tmp)


@case
def custom_coco_class_list_differs(tmp):
    write(tmp / "train.json", coco_split([{"id": 1, "name": "a"}]))
    write(tmp / "test.json", coco_split([{"id": 1, "name": "a"}]))
    write(tmp / "classes.txt", "b\n")
    custom.convert_custom_coco(tmp)


@case
def custom_csv_missing(tmp):
    custom.convert_custom_csv(tmp)


@case
def custom_csv_bad_row(tmp):
    write(tmp / "train.csv", "a.jpg,cat,dog\n")
    write(tmp / "test.csv", "b.jpg,cat\n")
    custom.convert_custom_csv(tmp)


@case
def custom_csv_no_rows(tmp):
    write(tmp / "train.csv", "path,labels\n")
    write(tmp / "test.csv", "b.jpg,cat\n")
    custom.convert_custom_csv(tmp)


@case
def custom_csv_no_labels(tmp):
    write(tmp / "train.csv", "a.jpg,\n")
    write(tmp / "test.csv", "b.jpg,\n")
    custom.convert_custom_csv(tmp)


@case
def custom_csv_label_not_in_class_list(tmp):
    write(tmp / "train.csv", "a.jpg,cat\n")
    write(tmp / "test.csv", "b.jpg,dog\n")
    write(tmp / "classes.txt", "cat\n")
    custom.convert_custom_csv(tmp)


@case
def custom_csv_not_utf8(tmp):
    write(tmp / "train.csv", "a.jpg,caf\xe9\n".encode("latin-1"))
    write(tmp / "test.csv", "b.jpg,cat\n")
    custom.convert_custom_csv(tmp)


@case
def prepare_unknown_dataset(tmp):
    prepare.prepare_dataset("imagenet", tmp / "out", tmp)


@case
def prepare_without_raw_path(tmp):
    prepare.prepare_dataset("voc07", tmp / "out")


@case
def prepare_raw_path_missing(tmp):
    prepare.prepare_dataset("custom_csv", tmp / "out", tmp / "nowhere")


# --- annotation, class and scores files --------------------------------------------------------------------------
ITEMS = [{"target": [1, 0], "img_path": "x/a.jpg"}, {"target": [0, 1], "img_path": "x/b.jpg"}]


def annotations(tmp, content, **kwargs):
    formats.read_annotations(write(tmp / "test.json", content), **kwargs)


@case
def annotations_missing(tmp):
    formats.read_annotations(tmp / "test.json")


@case
def annotations_not_json(tmp):
    annotations(tmp, "[{")


@case
def annotations_not_utf8(tmp):
    annotations(tmp, b"\xff\xfe[")


@case
def annotations_empty_list(tmp):
    annotations(tmp, [])


@case
def annotations_item_without_img_path(tmp):
    annotations(tmp, [{"target": [1]}])


@case
def annotations_target_not_integers(tmp):
    annotations(tmp, [{"target": ["1"], "img_path": "a.jpg"}])


@case
def annotations_class_count_differs(tmp):
    annotations(tmp, [{"target": [1, 0], "img_path": "a.jpg"}], num_classes=3)


@case
def annotations_bad_bbox(tmp):
    annotations(tmp, [{"target": [1], "img_path": "a.jpg", "bbox": [0, 0, 0, 5]}])


@case
def annotations_bad_label_code(tmp):
    annotations(tmp, [{"target": [-1, 1], "img_path": "a.jpg"}], label_format="binary")


@case
def classes_missing(tmp):
    formats.read_classes(tmp / "classes.txt")


@case
def classes_empty(tmp):
    formats.read_classes(write(tmp / "classes.txt", "\n\n"))


@case
def classes_duplicate(tmp):
    formats.read_classes(write(tmp / "classes.txt", "a\nb\na\n"))


@case
def classes_not_utf8(tmp):
    formats.read_classes(write(tmp / "classes.txt", "caf\xe9\n".encode("latin-1")))


@case
def classes_not_the_datasets(tmp):
    write(tmp / "classes.txt", "cat\n")
    registry.resolve_classes(registry.get_dataset("voc07"), tmp)


@case
def classes_of_custom_data_missing(tmp):
    registry.resolve_classes(registry.get_dataset("custom_csv"), tmp)


def scores(tmp, content, num_classes=2):
    formats.read_scores(write(tmp / "scores.json", content), ITEMS, num_classes)


@case
def scores_not_json(tmp):
    scores(tmp, "[1, 2")


@case
def scores_too_few_entries(tmp):
    scores(tmp, [{"file_name": "a", "scores": [0.1, 0.2]}])


@case
def scores_entry_without_scores(tmp):
    scores(tmp, [{"file_name": "a"}, {"file_name": "b", "scores": [0.1, 0.2]}])


@case
def scores_not_numbers(tmp):
    scores(tmp, [{"file_name": "a", "scores": ["0.1", 0.2]}, {"file_name": "b", "scores": [0.1, 0.2]}])


@case
def scores_class_count_differs(tmp):
    scores(tmp, [{"file_name": "a", "scores": [0.1]}, {"file_name": "b", "scores": [0.1]}])


@case
def scores_in_another_order(tmp):
    scores(tmp, [{"file_name": "b", "scores": [0.1, 0.2]}, {"file_name": "a", "scores": [0.1, 0.2]}])


# --- params --------------------------------------------------------------------------------------------------------
def params(tmp, edit=None, text=None):
    path = tmp / "params.yaml"
    if text is not None:
        write(path, text)
    else:
        data = yaml.safe_load((REPO / "params.yaml").read_text())
        edit(data)
        path.write_text(yaml.safe_dump(data))
    load_params(path)


@case
def params_missing_file(tmp):
    load_params(tmp / "params.yaml")


@case
def params_not_yaml(tmp):
    params(tmp, text="train: [1, 2\n")


@case
def params_not_utf8(tmp):
    params(tmp, text=b"data: {dataset: caf\xe9}\n")


@case
def params_not_a_mapping(tmp):
    params(tmp, text="- 1\n- 2\n")


@case
def params_unknown_key(tmp):
    params(tmp, lambda d: d["train"].update(lamda=0.3))


@case
def params_missing_key(tmp):
    params(tmp, lambda d: d["train"].pop("seed"))


@case
def params_group_not_a_mapping(tmp):
    params(tmp, lambda d: d.update(train=[1, 2]))


@case
def params_wrong_type(tmp):
    params(tmp, lambda d: d["train"].update(epochs="ten"))


@case
def params_null(tmp):
    params(tmp, lambda d: d["train"].update(lam=None))


@case
def params_out_of_range(tmp):
    params(tmp, lambda d: d["train"].update(momentum=1.0))


@case
def params_not_a_choice(tmp):
    params(tmp, lambda d: d["train"].update(optimizer="adam"))


@case
def params_unknown_model(tmp):
    params(tmp, lambda d: d["train"].update(model="resnet7"))


@case
def params_vit_size_not_a_multiple_of_16(tmp):
    params(tmp, lambda d: d["train"].update(model="vit_b16_224", img_size=200))


@case
def params_not_finite(tmp):
    params(tmp, lambda d: d["train"].update(lr=float("inf")))


@case
def params_nested_group(tmp):
    params(tmp, lambda d: d["prepare"]["synthetic"].update(width=8))


# --- checkpoints, official state dicts, training states ------------------------------------------------------------
@functools.cache
def tiny_model():
    return build_model(ModelConfig.create("resnet18", 2, 1, 0.1, 32))


def heads(num_heads, classes):
    """An official state dict reduced to its CSRA heads: what the head and class checks read."""
    return {f"classifier.multi_head.{i}.head.weight": torch.zeros(classes, 512, 1, 1) for i in range(num_heads)}


class Payload:
    pass


@case
def checkpoint_missing(tmp):
    load_model(tmp / "best.pt")


@case
def checkpoint_not_a_torch_file(tmp):
    load_model(write(tmp / "best.pt", "hello"))


@case
def checkpoint_needs_unpickling(tmp):
    path = tmp / "best.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "csra-checkpoint-v1", "x": Payload()}, f)
    load_model(path)


@case
def checkpoint_not_ours(tmp):
    torch.save({"weights": torch.zeros(1)}, tmp / "best.pt")
    load_checkpoint(tmp / "best.pt")


@case
def checkpoint_not_a_state_dict(tmp):
    torch.save({"weights": "none"}, tmp / "best.pt")
    load_model(tmp / "best.pt", ModelOptions("resnet18", lam=0.1, classes=["a", "b"]))


@case
def checkpoint_class_names_do_not_fit_the_model(tmp):
    load_model(save_checkpoint(tmp / "best.pt", tiny_model(), ["a", "b", "c"], {}))


@case
def checkpoint_other_classes_than_the_dataset(tmp):
    load_model(save_checkpoint(tmp / "best.pt", tiny_model(), ["a", "b"], {}), ModelOptions(classes=["a", "c"]))


@case
def checkpoint_other_heads_than_given(tmp):
    load_model(save_checkpoint(tmp / "best.pt", tiny_model(), ["a", "b"], {}), ModelOptions(num_heads=2))


@case
def official_state_dict_without_options(tmp):
    torch.save(heads(1, 2), tmp / "official.pth")
    load_model(tmp / "official.pth")


@case
def official_state_dict_other_head_count(tmp):
    torch.save(heads(2, 2), tmp / "official.pth")
    load_model(tmp / "official.pth", ModelOptions("resnet18", num_heads=1, lam=0.1, classes=["a", "b"]))


@case
def official_state_dict_other_class_count(tmp):
    torch.save(heads(1, 2), tmp / "official.pth")
    load_model(tmp / "official.pth", ModelOptions("resnet18", lam=0.1, classes=["a", "b", "c"]))


@case
def official_state_dict_that_does_not_fit(tmp):
    torch.save(heads(1, 2), tmp / "official.pth")  # no backbone weights
    load_model(tmp / "official.pth", ModelOptions("resnet18", lam=0.1, classes=["a", "b"]))


@case
def per_class_thresholds_not_stored(tmp):
    class_thresholds(2, 0.5, None, per_class=True, source="best.pt")


def train_data():
    from csra.data.prepared import TrainData

    return TrainData(ITEMS, ITEMS, ["a", "b"], "voc07")


def train_cfg():
    from helpers import train_config

    return train_config()


@case
def resume_without_a_state(tmp):
    find_resume(tmp / "train_state.pt", train_cfg(), train_data(), "always", 1)


@case
def resume_from_a_file_that_is_not_a_state(tmp):
    torch.save({"epoch": 1}, tmp / "train_state.pt")
    find_resume(tmp / "train_state.pt", train_cfg(), train_data(), "auto", 1)


@case
def resume_with_other_settings(tmp):
    torch.save({"format": "csra-train-state-v1", "fingerprint": "x", "world_size": 1}, tmp / "train_state.pt")
    find_resume(tmp / "train_state.pt", train_cfg(), train_data(), "always", 1)


@case
def resume_from_a_state_without_ema(tmp):
    import dataclasses

    from csra.distributed import SINGLE
    from csra.train.run import build_trainer

    cfg = dataclasses.replace(train_cfg(), ema_decay=0.9)
    state = build_trainer(dataclasses.replace(cfg, ema_decay=0.0), train_data(), None, SINGLE, False).state_dict()
    build_trainer(cfg, train_data(), None, SINGLE, False).load_state_dict(state)


@case
def mlflow_run_file_malformed(tmp):
    with tracking.stage_run(write(tmp / "run.json", {"run": 1}), "csra", {}, "x"):
        pass


@case
def mlflow_store_unreachable(tmp):
    (tmp / "a_file").write_text("")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/a_file/mlflow.db"  # a folder that cannot be made
    with tracking.stage_run(None, "csra", {}, "x"):
        pass


# --- images, devices, model settings -------------------------------------------------------------------------------
@case
def image_unreadable(tmp):
    load_image(write(tmp / "a.jpg", "not an image"))


@case
def image_missing(tmp):
    load_image(tmp / "a.jpg")


@case
def image_folder_missing(tmp):
    list_images(tmp / "images")


@case
def image_folder_empty(tmp):
    list_images(tmp)


@case
def device_unknown(tmp):
    resolve_device("gpu")


@case
def model_unknown(tmp):
    ModelConfig.create("resnet7", 2, 1, 0.1, 32)


@case
def model_head_count(tmp):
    build_model(ModelConfig.create("resnet18", 2, 3, 0.1, 32))


@case
def initial_weights_missing(tmp):
    build_model(ModelConfig.create("resnet18", 2, 1, 0.1, 32), str(tmp / "resnet18.pth"))


@case
def initial_weights_that_do_not_fit(tmp):
    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3)}, tmp / "weights.pth")
    build_model(ModelConfig.create("resnet18", 2, 1, 0.1, 32), str(tmp / "weights.pth"))


@case
def imagenet_weights_not_in_the_cache(tmp):
    cache = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp))  # an empty cache
    try:
        build_model(ModelConfig.create("resnet18", 2, 1, 0.1, 32), "imagenet")
    finally:
        torch.hub.set_dir(cache)


@case
def model_img_size(tmp):
    ModelConfig.create("resnet18", 2, 1, 0.1, 16)


@case
def model_config_incomplete(tmp):
    ModelConfig.from_dict({"backbone": "resnet18"})


# --- the cases of "trustworthy records": each with the words its one line must hold ------------------------------
MESSAGES = {}


def says(*words):
    """Register a case and the words its message must hold."""
    def register(fn):
        MESSAGES[fn.__name__] = words
        return case(fn)
    return register


def two_scores(first, second="0.2"):
    return f'[{{"file_name": "a", "scores": [{first}, 0.2]}}, {{"file_name": "b", "scores": [0.1, {second}]}}]'


@says("scores.json: entry 0 has score nan for class 0", "finite and in [0, 1]")
def scores_nan(tmp):
    scores(tmp, two_scores("NaN"))


@says("scores.json: entry 1 has score inf for class 1")
def scores_infinite(tmp):
    scores(tmp, two_scores("0.3", "Infinity"))


@says("scores.json: entry 0 has score 3.5 for class 0", "(sigmoid scores)")
def scores_out_of_range(tmp):
    scores(tmp, two_scores("3.5"))


@says("test.json: item 0 ('target') is not a list of integers")
def annotations_target_of_booleans(tmp):
    annotations(tmp, [{"target": [True, False], "img_path": "a.jpg"}])


@says("best.pt: not a checkpoint: neither torch's zip format nor a pickle")
def checkpoint_random_bytes(tmp):
    load_model(write(tmp / "best.pt", bytes(range(7, 250))))


@says("best.pt: a folder, not a checkpoint file")
def checkpoint_is_a_folder(tmp):
    (tmp / "best.pt").mkdir()
    load_model(tmp / "best.pt")


@says("train_state.pt: the resumable state of a training run, not a checkpoint (use best.pt or model.pt)")
def checkpoint_is_a_training_state(tmp):
    torch.save({"format": "csra-train-state-v1", "epoch": 1}, tmp / "train_state.pt")
    load_model(tmp / "train_state.pt")


def tampered(tmp, **fields):
    payload = torch.load(save_checkpoint(tmp / "ok.pt", tiny_model(), ["a", "b"], {}), weights_only=True)
    payload.update(fields)
    payload = {k: v for k, v in payload.items() if v is not None}
    torch.save(payload, tmp / "best.pt")
    load_model(tmp / "best.pt")


@says("best.pt: checkpoint field 'classes' is missing or not a list of class names")
def checkpoint_missing_field(tmp):
    tampered(tmp, classes=None)


@says("best.pt: checkpoint field 'classes' is missing or not a list of class names")
def checkpoint_mistyped_field(tmp):
    tampered(tmp, classes="a,b")


@says("best.pt: checkpoint field 'model_config': model config field 'num_classes' is 'two', of the wrong kind")
def checkpoint_mistyped_model_config(tmp):
    config = tiny_model().config.to_dict()
    tampered(tmp, model_config={**config, "num_classes": "two"})


@says("best.pt: checkpoint field 'thresholds' must hold one threshold in [0, 1] (or null) per class")
def checkpoint_thresholds_out_of_range(tmp):
    tampered(tmp, thresholds=[1.5, None])


@says("a whole CSRA model (it has CSRA heads), not backbone weights")
def pretrained_is_a_whole_csra_model(tmp):
    from official import official_resnet18_state

    from csra.model.backbones import create_backbone, load_initial_weights

    torch.save(official_resnet18_state(1, 2), tmp / "voc.pth")
    load_initial_weights(create_backbone("resnet18"), "resnet18", str(tmp / "voc.pth"))


@says("a file, not a folder of images")
def demo_images_is_a_file(tmp):
    list_images(write(tmp / "photo.jpg", "x"))


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


@says("models:/csra: expected a registered model as models:/NAME@ALIAS or models:/NAME/VERSION")
def registered_model_uri_malformed(tmp):
    from stages import registry

    registry.fetch("models:/csra", tmp)


@says("models:/nothing@champion: no such registered model version")
def registered_model_missing(tmp):
    from stages import registry

    registry.fetch("models:/nothing@champion", tmp)


@says("--model-uri models:/csra@champion: a registered model takes no --checkpoint, --lam")
def registered_model_with_model_options(tmp):
    from stages.inference import only_one_source

    only_one_source(tmp / "best.pt", "models:/csra@champion", model=None, lam=0.1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_user_error_is_a_one_line_csra_error(name, tmp_path):
    try:
        CASES[name](tmp_path)
    except Exception as e:  # any type: the point is which one it is
        assert isinstance(e, CSRAError), f"{type(e).__name__}: {e}"
        message = str(e)
        assert message.strip() and "\n" not in message and "Traceback" not in message, message
        for words in MESSAGES.get(name, ()):
            assert words in message, message
    else:
        pytest.fail(f"{name}: no error")


def test_describe_difference_names_the_first_difference():
    assert describe_difference(["a", "b"], ["a", "b", "c"]) == "2 class names, not 3"
    assert describe_difference(["a", "x", "y"], ["a", "b", "c"]) == "class 1 is 'x', not 'b'"
