"""User errors the commands meet, each a one-line CSRAError: params, resume states, the MLflow store, images,
devices and image folders."""

import os

import pytest
import torch
import yaml
from conftest import repo_params
from errorwalk import ITEMS, Walk, write

from csra.data.loading import list_images, load_image
from csra.evaluate.predict import resolve_device
from csra.model.network import ModelConfig, build_model
from csra.train.state import find_resume
from stages import tracking
from stages.params import load_params

walk = Walk()
case, says = walk.case, walk.says


# --- params --------------------------------------------------------------------------------------------------------
def params(tmp, edit=None, text=None):
    path = tmp / "params.yaml"
    if text is not None:
        write(path, text)
    else:
        data = repo_params()
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


@says("a file, not a folder of images")
def demo_images_is_a_file(tmp):
    list_images(write(tmp / "photo.jpg", "x"))


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


@pytest.mark.parametrize("name", sorted(walk.cases))
def test_each_user_error_is_a_one_line_csra_error(name, tmp_path):
    walk.check(name, tmp_path)
