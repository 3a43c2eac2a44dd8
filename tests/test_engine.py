"""The paper's schedule and lr groups, the trainer's determinism, NaN stop, EMA and exact resume."""

import dataclasses

import pytest
import torch

from csra.engine import TrainConfig, lr_factor, make_optimizer
from csra.errors import CSRAError
from csra.model import ModelConfig, build_model
from csra.trainer import NonFiniteLoss, start_trainer

CFG = TrainConfig(
    optimizer="sgd", epochs=2, batch_size=8, lr=0.01, classifier_lr_mult=10.0, momentum=0.9, weight_decay=1e-4,
    warmup_epochs=2, step_size=4, gamma=0.1, loss="bce", label_smoothing=0.0, asl_gamma_neg=4.0, asl_gamma_pos=0.0,
    asl_clip=0.05, ema_decay=0.0, amp=True, channels_last=False, compile=False, sync_bn=False, num_workers=0,
    seed=0, device="cpu",
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


def test_trainer_lr_per_iteration_in_both_groups(tiny_data):
    classes, trainval, test = tiny_data  # 16 images, batch 8: 2 iterations per epoch
    trainer = start_trainer(tiny_model(len(classes)), trainval, test, dataclasses.replace(CFG, step_size=1), "voc07")
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
    opt = make_optimizer(model, dataclasses.replace(CFG, optimizer=optimizer))
    backbone, heads = opt.param_groups
    assert backbone["lr"] == 0.01 and heads["lr"] == pytest.approx(0.1)
    assert {id(p) for p in heads["params"]} == {id(p) for p in model.classifier.parameters()}
    assert len(backbone["params"]) == len(list(model.backbone.parameters()))


def test_unknown_optimizer():
    with pytest.raises(CSRAError, match="unknown optimizer 'adam'.*sgd, adamw"):
        make_optimizer(tiny_model(), dataclasses.replace(CFG, optimizer="adam"))


def run(trainval, test, cfg):
    torch.manual_seed(0)
    trainer = start_trainer(tiny_model(), trainval, test, cfg, "voc07")
    trainer.fit()
    return [(r["train_loss"], r["val_mAP"]) for r in trainer.history]


def test_same_seed_same_history_whatever_the_loader_processes(tiny_data):
    _, trainval, test = tiny_data
    first = run(trainval, test, CFG)
    assert run(trainval, test, CFG) == first
    # each image's augmentation is seeded by (seed, epoch, index): worker processes change nothing
    assert run(trainval, test, dataclasses.replace(CFG, num_workers=2)) == first
    assert run(trainval, test, dataclasses.replace(CFG, seed=1)) != first


def test_resume_from_a_saved_state_is_exact(tiny_data):
    _, trainval, test = tiny_data
    cfg = dataclasses.replace(CFG, epochs=3, ema_decay=0.9)
    straight = run(trainval, test, cfg)
    torch.manual_seed(0)
    first = start_trainer(tiny_model(), trainval, test, dataclasses.replace(cfg, epochs=2), "voc07")
    first.fit()
    state = first.state_dict()
    torch.manual_seed(123)  # a new process: other initial weights and RNG, all replaced by the state
    resumed = start_trainer(tiny_model(), trainval, test, cfg, "voc07")
    resumed.load_state_dict(state)
    resumed.fit()
    assert [(r["train_loss"], r["val_mAP"]) for r in resumed.history] == straight
    assert resumed.eval_model is resumed.ema.module


def test_non_finite_loss_stops_with_clear_message(tiny_data):
    classes, trainval, test = tiny_data
    model = tiny_model(len(classes))
    with torch.no_grad():
        model.classifier.multi_head[0].head.weight.fill_(float("nan"))
    trainer = start_trainer(model, trainval, test, CFG, "voc07")
    with pytest.raises(NonFiniteLoss, match="training loss is nan at epoch 1, step 0; lower train.lr"):
        trainer.fit()
