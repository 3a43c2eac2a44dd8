"""The paper's optimisation: the warm-up and step schedule per iteration, and the two lr groups."""

import pytest
from helpers import train_config

from csra.data.prepared import TrainData
from csra.distributed import SINGLE
from csra.model.network import ModelConfig, build_model
from csra.train.optim import lr_factor, make_optimizer
from csra.train.run import build_trainer

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
    trainer = build_trainer(train_config(step_size=1), TrainData(trainval, test, classes, "voc07"), None, SINGLE,
                            False)
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
