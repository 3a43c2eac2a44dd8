"""The paper's optimisation: the warm-up and step schedule per iteration, and the two lr groups."""

import functools

import pytest
import torch
from dvc.utils.hydra import compose_and_dump
from helpers import REPO, stage_params, train_config

from csra.data.prepared import TrainData
from csra.model.network import ModelConfig, build_model
from csra.train.loop import build_training
from csra.train.optim import lr_factor, make_optimizer

CFG = train_config()


def tiny_model(num_classes=10):
    return build_model(ModelConfig.create("resnet18", num_classes, 1, 0.1, 32))


def test_warmup_is_linear_per_iteration_from_zero():
    iters = 5
    assert [lr_factor(i, iters, CFG) for i in range(10)] == [i / 10 for i in range(10)]
    assert lr_factor(10, iters, CFG) == 1.0


def test_step_decay_every_step_size_epochs():
    iters = 3
    factors = [lr_factor(epoch * iters, iters, CFG) for epoch in range(2, 13)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001])


def test_trainer_lr_per_iteration_in_both_groups(tiny_data):
    classes, trainval, test = tiny_data  # 16 images, batch 8: 2 iterations per epoch
    trainer = build_training(train_config(step_size=1), TrainData(trainval, test, classes, "voc07"),
                             torch.device("cpu"))
    seen = []
    for _ in range(8):
        seen.append([group["lr"] for group in trainer.optimizer.param_groups])
        trainer.optimizer.step()
        trainer.scheduler.step()
    # warm-up over 2 epochs = 4 iterations: 0, 1/4, 2/4, 3/4 of the base lr; then 0.1^(epoch // 1)
    backbone = [0.0, 0.0025, 0.005, 0.0075, 0.01 * 0.1**2, 0.01 * 0.1**2, 0.01 * 0.1**3, 0.01 * 0.1**3]
    assert [s[0] for s in seen] == pytest.approx(backbone)
    assert [s[1] for s in seen] == pytest.approx([10 * b for b in backbone])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_two_lr_groups_backbone_and_heads(optimizer):
    model = tiny_model()
    opt = make_optimizer(model, train_config(optimizer=optimizer))
    backbone, heads = opt.param_groups
    assert backbone["lr"] == 0.01 and heads["lr"] == pytest.approx(0.1)
    assert {id(p) for p in heads["params"]} == {id(p) for p in model.classifier.parameters()}
    assert len(backbone["params"]) == len(list(model.backbone.parameters()))


# What each recipe's optimiser must be (docs/training.md): the paper's SGD for the real datasets, AdamW for the
# built-in one. (class, backbone lr, heads lr, hyper-parameters every group must carry)
PAPER_SGD = (torch.optim.SGD, 0.01, 0.1, {"momentum": 0.9, "weight_decay": 1e-4, "dampening": 0, "nesterov": False})
OPTIMISERS = {
    "paper": PAPER_SGD, "voc07": PAPER_SGD, "coco": PAPER_SGD, "coco_cutmix": PAPER_SGD, "wider": PAPER_SGD,
    "synthetic": (torch.optim.AdamW, 0.002, 0.002, {"weight_decay": 1e-4}),
}


@functools.cache
def shared_model():
    return tiny_model()  # make_optimizer only reads it


@pytest.mark.parametrize("recipe", sorted(OPTIMISERS))
def test_each_recipe_builds_its_optimiser(tmp_path, recipe):
    kind, backbone_lr, heads_lr, hyper = OPTIMISERS[recipe]
    path = tmp_path / "params.yaml"  # composed by Hydra as `dvc exp run -S train=RECIPE` does
    compose_and_dump(path, str(REPO / "conf"), None, "config", str(REPO), [f"train={recipe}"])
    cfg = stage_params("train", path).train.config(num_workers=0)
    model = shared_model()
    opt = make_optimizer(model, cfg)
    assert type(opt) is kind
    backbone, heads = opt.param_groups
    assert {id(p) for p in backbone["params"]} == {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in heads["params"]} == {id(p) for p in model.classifier.parameters()}
    assert backbone["lr"] == pytest.approx(backbone_lr) and heads["lr"] == pytest.approx(heads_lr)
    for group in (backbone, heads):
        assert {k: group[k] for k in hyper} == pytest.approx(hyper)


def test_sgd_step_applies_momentum_and_weight_decay():
    """One parameter under a constant gradient g: v1 = g + wd·p0, p1 = p0 - lr·v1; v2 = m·v1 + g + wd·p1."""
    model = tiny_model()
    cfg = train_config(lr=0.1, classifier_lr_mult=1.0, momentum=0.9, weight_decay=0.01)
    opt = make_optimizer(model, cfg)
    param = next(model.classifier.parameters())
    p0 = param.detach().clone()
    g = torch.ones_like(param)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    param.grad = g.clone()
    opt.step()
    v1 = g + 0.01 * p0
    p1 = p0 - 0.1 * v1
    assert torch.allclose(param.detach(), p1, atol=1e-6)
    param.grad = g.clone()
    opt.step()
    assert torch.allclose(param.detach(), p1 - 0.1 * (0.9 * v1 + g + 0.01 * p1), atol=1e-6)
