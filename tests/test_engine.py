import dataclasses

import pytest
import torch

from csra.engine import TrainConfig, fit, lr_factor, make_optimizer, seed_everything, train_one_epoch
from csra.errors import CSRAError
from csra.model import ModelConfig, build_model

CFG = TrainConfig(
    optimizer="sgd", epochs=2, batch_size=8, lr=0.01, classifier_lr_mult=10.0, momentum=0.9, weight_decay=1e-4,
    warmup_epochs=2, step_size=4, gamma=0.1, num_workers=0, seed=0, device="cpu",
)


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


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_two_lr_groups_backbone_and_heads(optimizer):
    model = tiny_model()
    opt = make_optimizer(model, dataclasses.replace(CFG, optimizer=optimizer))
    backbone, heads = opt.param_groups
    assert backbone["lr"] == 0.01 and heads["lr"] == pytest.approx(0.1)
    assert {id(p) for p in heads["params"]} == {id(p) for p in model.classifier.parameters()}
    assert len(backbone["params"]) == len(list(model.backbone.parameters()))


def test_unknown_optimizer():
    with pytest.raises(CSRAError, match="unknown optimizer 'adam'.*sgd, adamw"):
        make_optimizer(tiny_model(), dataclasses.replace(CFG, optimizer="adam"))


def test_same_seed_same_history(tiny_data):
    classes, trainval, test = tiny_data
    runs = []
    for _ in range(2):
        seed_everything(CFG.seed)
        runs.append(fit(tiny_model(len(classes)), trainval, test, CFG, "voc07")[0])
    assert [r["train_loss"] for r in runs[0]] == [r["train_loss"] for r in runs[1]]
    assert [r["val_mAP"] for r in runs[0]] == [r["val_mAP"] for r in runs[1]]
    assert [r["epoch"] for r in runs[0]] == [1, 2]


def test_non_finite_loss_stops_with_clear_message():
    model = tiny_model(2)
    with torch.no_grad():
        model.classifier.multi_head[0].head.weight.fill_(float("nan"))
    loader = [(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), torch.ones(2, 2))]
    opt = make_optimizer(model, CFG)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0)
    with pytest.raises(CSRAError, match="training loss is nan at epoch 3, step 0"):
        train_one_epoch(model, loader, opt, sched, torch.device("cpu"), epoch=3)
