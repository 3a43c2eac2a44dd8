"""User errors of the model layer, each a one-line CSRAError: checkpoints (ours, official state dicts, damaged
or tampered files), initial weights, model settings."""

import functools
import pickle

import pytest
import torch
from errorwalk import Walk, write

from csra.deploy.scoring import class_thresholds
from csra.errors import describe_difference
from csra.model.checkpoints import ModelOptions, load_checkpoint_model, save_checkpoint
from csra.model.network import ModelConfig, build_model

walk = Walk()
says = walk.says


# --- checkpoints, official state dicts, training states ------------------------------------------------------------
@functools.cache
def tiny_model():
    return build_model(ModelConfig.create("resnet18", 2, 1, 0.1, 32))


def heads(num_heads, classes):
    """An official state dict reduced to its CSRA heads: what the head and class checks read."""
    return {f"classifier.multi_head.{i}.head.weight": torch.zeros(classes, 512, 1, 1) for i in range(num_heads)}


class Payload:
    pass


@says("best.pt: checkpoint not found")
def checkpoint_missing(tmp):
    load_checkpoint_model(tmp / "best.pt")


@says("best.pt: not a checkpoint: neither torch's zip format nor a pickle")
def checkpoint_not_a_torch_file(tmp):
    load_checkpoint_model(write(tmp / "best.pt", "hello"))


@says("best.pt: refused, it holds objects a weights-only load does not allow")
def checkpoint_needs_unpickling(tmp):
    path = tmp / "best.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "csra-checkpoint-v1", "x": Payload()}, f)
    load_checkpoint_model(path)


@says("best.pt: not a state dict (expected a mapping of parameter names to tensors)")
def checkpoint_not_a_state_dict(tmp):
    torch.save({"weights": "none"}, tmp / "best.pt")
    load_checkpoint_model(tmp / "best.pt", ModelOptions("resnet18", lam=0.1, classes=["a", "b"]))


@says("best.pt: 3 class names, but the model has 2 classes")
def checkpoint_class_names_do_not_fit_the_model(tmp):
    load_checkpoint_model(save_checkpoint(tmp / "best.pt", tiny_model(), ["a", "b", "c"], {}))


@says("best.pt: the checkpoint's 2 classes are not the dataset's: class 1 is 'b', not 'c'")
def checkpoint_other_classes_than_the_dataset(tmp):
    load_checkpoint_model(save_checkpoint(tmp / "best.pt", tiny_model(), ["a", "b"], {}),
                          ModelOptions(classes=["a", "c"]))


@says("best.pt: the checkpoint has num_heads 1, but 2 was given")
def checkpoint_other_heads_than_given(tmp):
    load_checkpoint_model(save_checkpoint(tmp / "best.pt", tiny_model(), ["a", "b"], {}), ModelOptions(num_heads=2))


@says("official.pth: an official state dict stores no model config",
      "(--model, --lam, --dataset; --num-heads and --img-size are checked / optional)")
def official_state_dict_without_options(tmp):
    torch.save(heads(1, 2), tmp / "official.pth")
    load_checkpoint_model(tmp / "official.pth")


@says("official.pth: the state dict has 2 CSRA head(s), but 1 was given")
def official_state_dict_other_head_count(tmp):
    torch.save(heads(2, 2), tmp / "official.pth")
    load_checkpoint_model(tmp / "official.pth", ModelOptions("resnet18", num_heads=1, lam=0.1, classes=["a", "b"]))


@says("official.pth: the state dict has 2 classes, but the dataset has 3")
def official_state_dict_other_class_count(tmp):
    torch.save(heads(1, 2), tmp / "official.pth")
    load_checkpoint_model(tmp / "official.pth", ModelOptions("resnet18", lam=0.1, classes=["a", "b", "c"]))


@says("official.pth: weights do not fit the model", "missing key(s): backbone.conv1.weight")
def official_state_dict_that_does_not_fit(tmp):
    torch.save(heads(1, 2), tmp / "official.pth")  # no backbone weights
    load_checkpoint_model(tmp / "official.pth", ModelOptions("resnet18", lam=0.1, classes=["a", "b"]))


@says("best.pt: no per-class thresholds stored (train with train.tune_thresholds: true)")
def per_class_thresholds_not_stored(tmp):
    class_thresholds(2, 0.5, None, per_class=True, source="best.pt")




@says("best.pt: not a checkpoint: neither torch's zip format nor a pickle")
def checkpoint_random_bytes(tmp):
    load_checkpoint_model(write(tmp / "best.pt", bytes(range(7, 250))))


@says("best.pt: a folder, not a checkpoint file")
def checkpoint_is_a_folder(tmp):
    (tmp / "best.pt").mkdir()
    load_checkpoint_model(tmp / "best.pt")


@says("train_state.pt: the resumable state of a training run, not a checkpoint (use best.pt)")
def checkpoint_is_a_training_state(tmp):
    torch.save({"format": "csra-train-state-v1", "epoch": 1}, tmp / "train_state.pt")
    load_checkpoint_model(tmp / "train_state.pt")


def tampered(tmp, **fields):
    payload = torch.load(save_checkpoint(tmp / "ok.pt", tiny_model(), ["a", "b"], {}), weights_only=True)
    payload.update(fields)
    payload = {k: v for k, v in payload.items() if v is not None}
    torch.save(payload, tmp / "best.pt")
    load_checkpoint_model(tmp / "best.pt")


@says("best.pt: checkpoint field 'classes' is missing or not a list of class names")
def checkpoint_missing_field(tmp):
    tampered(tmp, classes=None)


@says("best.pt: checkpoint field 'classes' is missing or not a list of class names")
def checkpoint_mistyped_field(tmp):
    tampered(tmp, classes="a,b")


@says("best.pt: checkpoint field 'model_config': num_classes must be an integer, got 'two'")
def checkpoint_mistyped_model_config(tmp):
    config = tiny_model().config.to_dict()
    tampered(tmp, model_config={**config, "num_classes": "two"})


@says("best.pt: checkpoint field 'thresholds' must hold one threshold in [0, 1] (or null) per class")
def checkpoint_thresholds_out_of_range(tmp):
    tampered(tmp, thresholds=[1.5, None])


@says("voc.pth: a whole CSRA model (it has CSRA heads), not backbone weights", "train.pretrained takes backbone")
def pretrained_is_a_whole_csra_model(tmp):
    from official import official_resnet18_state

    from csra.model.backbones import create_backbone, load_initial_weights

    torch.save(official_resnet18_state(1, 2), tmp / "voc.pth")
    load_initial_weights(create_backbone("resnet18"), "resnet18", str(tmp / "voc.pth"))




def test_describe_difference_names_the_first_difference():
    assert describe_difference(["a", "b"], ["a", "b", "c"]) == "2 class names, not 3"
    assert describe_difference(["a", "x", "y"], ["a", "b", "c"]) == "class 1 is 'x', not 'b'"


@pytest.mark.parametrize("name", sorted(walk.cases))
def test_each_user_error_is_a_one_line_csra_error(name, tmp_path):
    walk.check(name, tmp_path)
