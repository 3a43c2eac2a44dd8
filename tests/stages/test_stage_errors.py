"""User errors the commands meet, each a one-line CSRAError: params, resume states, the MLflow store, images,
devices and image folders."""

import os

import pytest
import torch
import yaml
from errorwalk import ITEMS, Walk, write
from helpers import load_all_params, repo_params

from csra.data.loading import list_images, load_image
from csra.evaluate.predict import resolve_device
from csra.model.network import ModelConfig, build_model
from csra.train.state import find_resume
from stages.tracking import runs, store

walk = Walk()
says = walk.says


# --- params --------------------------------------------------------------------------------------------------------
def params(tmp, edit=None, text=None):
    path = tmp / "params.yaml"
    if text is not None:
        write(path, text)
    else:
        data = repo_params()
        edit(data)
        path.write_text(yaml.safe_dump(data))
    load_all_params(path)


@says("params.yaml: params file not found (run from the repository root or pass --params)")
def params_missing_file(tmp):
    load_all_params(tmp / "params.yaml")


@says("params.yaml: not valid YAML (while parsing a flow sequence)")
def params_not_yaml(tmp):
    params(tmp, text="train: [1, 2\n")


@says("params.yaml: not UTF-8 text")
def params_not_utf8(tmp):
    params(tmp, text=b"data: {dataset: caf\xe9}\n")


@says("params.yaml: expected a mapping of parameter groups")
def params_not_a_mapping(tmp):
    params(tmp, text="- 1\n- 2\n")


@says("params.yaml: unknown key train.lamda (did you mean lam?); train takes model, pretrained, head")
def params_unknown_key(tmp):
    params(tmp, lambda d: d["train"].update(lamda=0.3))


@says("params.yaml: train must be a mapping of keys, got [1, 2]")
def params_group_not_a_mapping(tmp):
    params(tmp, lambda d: d.update(train=[1, 2]))


@says("params.yaml: train.epochs must be an integer, got 'ten'")
def params_wrong_type(tmp):
    params(tmp, lambda d: d["train"].update(epochs="ten"))


@says("params.yaml: train.lam must be a number, got null")
def params_null(tmp):
    params(tmp, lambda d: d["train"].update(lam=None))


@says("params.yaml: train.momentum must be < 1, got 1.0")
def params_out_of_range(tmp):
    params(tmp, lambda d: d["train"].update(momentum=1.0))


@says("params.yaml: train.optimizer must be one of sgd, adamw, got 'adam'")
def params_not_a_choice(tmp):
    params(tmp, lambda d: d["train"].update(optimizer="adam"))


@says("params.yaml: train.model must be one of resnet18, resnet34, resnet50", "got 'resnet7'")
def params_unknown_model(tmp):
    params(tmp, lambda d: d["train"].update(model="resnet7"))


@says("params.yaml: train.img_size of vit_b16_224 must be a multiple of 16, got 200")
def params_vit_size_not_a_multiple_of_16(tmp):
    params(tmp, lambda d: d["train"].update(model="vit_b16_224", img_size=200))


@says("params.yaml: train.lr must be a finite number, got inf")
def params_not_finite(tmp):
    params(tmp, lambda d: d["train"].update(lr=float("inf")))


@says("params.yaml: prepare.synthetic.width must be ≥ 16, got 8")
def params_nested_group(tmp):
    params(tmp, lambda d: d["prepare"]["synthetic"].update(width=8))



def train_data():
    from csra.data.prepared import TrainData

    return TrainData(ITEMS, ITEMS, ["a", "b"], "voc07")


def train_cfg():
    from helpers import train_config

    return train_config()


@says("train_state.pt: no interrupted run to resume")
def resume_without_a_state(tmp):
    find_resume(tmp / "train_state.pt", train_cfg(), train_data(), "always", 1)


@says("resume mode must be one of auto, never, always, got 'sometimes'")
def resume_with_a_mode_that_does_not_exist(tmp):
    find_resume(tmp / "train_state.pt", train_cfg(), train_data(), "sometimes", 1)


@says("train_state.pt: not a CSRA training state (no format 'csra-train-state-v1')")
def resume_from_a_file_that_is_not_a_state(tmp):
    torch.save({"epoch": 1}, tmp / "train_state.pt")
    find_resume(tmp / "train_state.pt", train_cfg(), train_data(), "auto", 1)


@says("train_state.pt: saved with other settings or another number of processes (2, this run 1)")
def resume_with_other_settings(tmp):
    torch.save({"format": "csra-train-state-v1", "fingerprint": "x", "world_size": 2}, tmp / "train_state.pt")
    find_resume(tmp / "train_state.pt", train_cfg(), train_data(), "always", 1)


@says("the saved training state has no EMA weights, but train.ema_decay is set")
def resume_from_a_state_without_ema(tmp):
    import dataclasses

    from csra.train.loop import build_training

    cfg, cpu = dataclasses.replace(train_cfg(), ema_decay=0.9), torch.device("cpu")
    state = build_training(dataclasses.replace(cfg, ema_decay=0.0), train_data(), cpu).state_dict()
    build_training(cfg, train_data(), cpu).load_state_dict(state)


@says("MLflow tracking store sqlite:///", "/a_file/mlflow.db: ")
def mlflow_store_unreachable(tmp):
    (tmp / "a_file").write_text("")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/a_file/mlflow.db"  # a folder that cannot be made
    with runs.stage_run(None, "csra", {}, "x"):
        pass


def server_refuses(tmp, status, body, user=None, doing=None):
    """What MLflow's client raises when a team server answers status (its basic-auth app), through store_errors,
    as user (None: no credentials; HOME is tmp, so no ~/.mlflow/credentials either)."""
    import requests
    from mlflow.utils.rest_utils import verify_rest_response

    response = requests.Response()
    response.status_code, response._content = status, body
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
        patch.setenv("HOME", str(tmp))
        for variable, value in zip(("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"), user or ()):
            patch.setenv(variable, value)
        if user is None:
            patch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
            patch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        with store.store_errors(*([doing] if doing else [])):
            verify_rest_response(response, "/api/2.0/mlflow/runs/create")


@says("the MLflow server at http://mlflow.example:5000 refused the request (401 unauthenticated): set "
      "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
def mlflow_server_without_credentials(tmp):
    server_refuses(tmp, 401, b"You are not authenticated.")


@says("the MLflow server at http://mlflow.example:5000 refused user 'trainer' (401 unauthenticated): check "
      "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
def mlflow_server_with_a_wrong_password(tmp):
    server_refuses(tmp, 401, b"You are not authenticated.", ("trainer", "wrong"))


@says("refused user 'reader' (403 permission denied): the user may not log runs to the experiment 'csra'")
def mlflow_server_refuses_a_reader(tmp):
    server_refuses(tmp, 403, b"Permission denied", ("reader", "pass"), "log runs to the experiment 'csra'")


@says("refused user 'reader' (403 permission denied): the user may not register versions of the model 'csra'")
def mlflow_server_refuses_a_reader_an_artifact(tmp):
    import requests

    response = requests.Response()
    response.status_code = 403
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
        with store.store_errors("register versions of the model 'csra'"):
            raise requests.HTTPError("403 Client Error: FORBIDDEN", response=response)



# --- images, devices, model settings -------------------------------------------------------------------------------
@says("a.jpg: cannot read image (not a JPEG, PNG or other format PIL decodes)")
def image_unreadable(tmp):
    load_image(write(tmp / "a.jpg", "not an image"))


@says("a.jpg: cannot read image", "No such file or directory")
def image_missing(tmp):
    load_image(tmp / "a.jpg")


@says("/images: image folder not found")
def image_folder_missing(tmp):
    list_images(tmp / "images")


@says("/photos: no JPEG or PNG images in this folder")
def image_folder_empty(tmp):
    list_images(write(tmp / "photos" / "notes.txt", "").parent)


@says("device 'gpu' is not a torch device (use auto, cpu, cuda or cuda:N)")
def device_unknown(tmp):
    resolve_device("gpu")


@says("weights.pth: weights do not fit the model",
      "1 shape mismatch(es) (file vs model): conv1.weight (64, 3, 3, 3) vs (64, 3, 7, 7)")
def initial_weights_that_do_not_fit(tmp):
    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3)}, tmp / "weights.pth")
    build_model(ModelConfig.create("resnet18", 2, 1, 0.1, 32), str(tmp / "weights.pth"))


@says("img_size must be ≥ 32, got 16")
def model_img_size(tmp):
    ModelConfig.create("resnet18", 2, 1, 0.1, 16)


@says("model config: missing keys num_classes, num_heads, lam, img_size, mean, std")
def model_config_incomplete(tmp):
    ModelConfig.from_dict({"backbone": "resnet18"})


@says("photo.jpg: a file, not a folder of images")
def demo_images_is_a_file(tmp):
    list_images(write(tmp / "photo.jpg", "x"))


@says("models:/csra: expected a registered model as models:/NAME@ALIAS or models:/NAME/VERSION")
def registered_model_uri_malformed(tmp):
    from stages.tracking import loading

    loading.fetch("models:/csra", tmp)


@says("models:/nothing@champion: no such registered model version")
def registered_model_missing(tmp):
    from stages.tracking import loading

    loading.fetch("models:/nothing@champion", tmp)


@says("--model-uri models:/csra-synthetic@champion: a registered model takes no --checkpoint, --num-heads, --lam")
def registered_model_with_model_options(tmp):
    from stages.common import ModelSource

    ModelSource(tmp / "best.pt", "models:/csra-synthetic@champion", num_heads=2, lam=0.1).checked()


# --- refused before any work: no MLflow run, nothing written ---------------------------------------------------------
REFUSED = {  # case: (command, params set, the error's words)
    "initial weights file": ("train", {"train.pretrained": "resnet18.pth"},
                             "resnet18.pth: initial weights file not found (train.pretrained: imagenet, none or a "
                             "path)"),
    "imagenet weights": ("train", {"train.pretrained": "imagenet"},
                         "ImageNet weights of resnet18 not found: put resnet18-"),
    "raw folder": ("prepare", {"data.dataset": "voc07", "data.raw_path": "data/raw/voc2007"},
                   "data/raw/voc2007: raw data folder of dataset voc07 not found (data.raw_path)"),
    "demo folder": ("demo", {"demo.images": "photos"}, "demo.images: photos: image folder not found"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_missing_input_is_refused_before_any_run_or_output(case, tiny_params, tiny_checkpoint, mlflow_store,
                                                             monkeypatch):
    """Missing initial weights (a file, or ImageNet's not in the TORCH_HOME cache), raw folder or demo folder: one
    error line naming the setting, before the stage starts an MLflow run or writes anything."""
    import mlflow
    from helpers import assert_one_line_error, edit_params, ok, run

    command, changes, words = REFUSED[case]
    ok("prepare")  # what the stage reads besides the missing input
    monkeypatch.setenv("TORCH_HOME", str(tiny_params.parent / "torch-cache"))  # an empty cache
    edit_params(tiny_params, **changes)
    root = tiny_params.parent
    before = sorted(p for p in root.rglob("*") if p != tiny_params)
    assert_one_line_error(*run(command, *(["--checkpoint", tiny_checkpoint] if command == "demo" else [])), words)
    assert sorted(p for p in root.rglob("*") if p != tiny_params) == before
    client = mlflow.MlflowClient(mlflow_store)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


@pytest.mark.parametrize("name", sorted(walk.cases))
def test_each_user_error_is_a_one_line_csra_error(name, tmp_path):
    walk.check(name, tmp_path)
