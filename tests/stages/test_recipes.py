"""The recipes in conf/, composed by Hydra exactly as `dvc exp run` does: params.yaml is their composition, each
recipe states only how it differs from the paper's, and `-S train=NAME` / `-S train.KEY=V` compose as expected."""

import subprocess

import pytest
import yaml
from dvc.utils.hydra import compose_and_dump
from helpers import REPO, load_all_params

CONF = REPO / "conf"
SPEED = {"amp", "channels_last", "compile", "sync_bn", "deterministic", "num_workers", "device", "seed"}
DIFFERENCES = {
    "voc07": {},
    "coco": {"num_heads": 4, "lam": 0.5, "step_size": 5},
    "coco_cutmix": {"pretrained": "pretrained/resnet101_cutmix.pth", "num_heads": 6, "lam": 0.4, "step_size": 5},
    "wider": {"model": "vit_b16_224", "pretrained": "pretrained/jx_vit_base_p16_224-80ecf9dd.pth", "lam": 0.3,
              "img_size": 224, "step_size": 5},
    "synthetic": {"model": "resnet18", "pretrained": "none", "img_size": 96, "optimizer": "adamw", "epochs": 6,
                  "batch_size": 32, "lr": 0.002, "classifier_lr_mult": 1.0, "warmup_epochs": 1,
                  "channels_last": False},
    "quick": {"model": "resnet18", "pretrained": "none", "img_size": 64, "optimizer": "adamw", "epochs": 2,
              "lr": 0.002, "classifier_lr_mult": 1.0, "warmup_epochs": 1, "channels_last": False},
}


def compose(tmp_path, *overrides):
    """params.yaml as DVC writes it with Hydra composition on (the function `dvc exp run` calls)."""
    out = tmp_path / "params.yaml"
    compose_and_dump(out, str(CONF), None, "config", str(REPO), list(overrides))
    return out


def committed(path: str) -> str | None:
    """The file as the checked-out commit has it (None outside a git checkout)."""
    shown = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=REPO, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else None


def test_params_yaml_is_the_composition_of_conf(tmp_path):
    # byte for byte: a `dvc exp run` without -S leaves the committed params.yaml as it is. An experiment run in the
    # workspace (`dvc exp run -S …`) rewrites it there: then the committed one is the composition.
    composed = compose(tmp_path).read_text()
    assert composed in ((REPO / "params.yaml").read_text(), committed("params.yaml"))


@pytest.mark.parametrize("recipe", sorted(DIFFERENCES))
def test_each_recipe_is_the_paper_plus_its_differences(tmp_path, recipe):
    paper = yaml.safe_load(compose(tmp_path, "train=paper").read_text())["train"]
    path = compose(tmp_path, f"train={recipe}")
    composed = yaml.safe_load(path.read_text())["train"]
    changed = {k: v for k, v in composed.items() if paper[k] != v and k != "recipe"}
    assert changed == DIFFERENCES[recipe] and composed["recipe"] == recipe
    load_all_params(path)  # every recipe passes the schemas


@pytest.mark.parametrize("recipe", sorted(DIFFERENCES))
def test_recipe_files_state_only_their_differences(recipe):
    data = yaml.safe_load((CONF / "train" / f"{recipe}.yaml").read_text())
    assert data.pop("defaults") == ["paper", "_self_"]
    paper = yaml.safe_load((CONF / "train" / "paper.yaml").read_text())
    assert data.pop("recipe") == recipe
    assert all(paper.get(k) != v for k, v in data.items())
    assert not (set(data) & SPEED) - {"channels_last"} and not set(paper) & SPEED


def test_one_value_overrides_the_recipe(tmp_path):
    composed = yaml.safe_load(compose(tmp_path, "train=coco", "train.lam=0.3").read_text())
    assert composed["train"]["lam"] == 0.3 and composed["train"]["num_heads"] == 4
    assert composed["train"]["recipe"] == "coco" and composed["data"]["dataset"] == "synthetic"
