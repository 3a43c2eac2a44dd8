"""The trainer: the same history for the same seed whatever the loader processes, exact resume, the NaN stop."""

import dataclasses

import pytest
import torch
from helpers import train_config

from csra.data.prepared import TrainData
from csra.distributed import SINGLE
from csra.model.network import ModelConfig, build_model
from csra.train.loop import NonFiniteLoss, Trainer
from csra.train.run import build_trainer

CFG = train_config()


def run(data, cfg, resume=None):
    trainer = build_trainer(cfg, data, None, SINGLE, False)
    if resume is not None:
        trainer.load_state_dict(resume)
    trainer.fit()
    return trainer


def curve(trainer):
    return [(r["train_loss"], r["val_mAP"]) for r in trainer.history]


@pytest.fixture
def data(tiny_data):
    classes, trainval, test = tiny_data
    return TrainData(trainval, test, classes, "voc07")


def test_same_seed_same_history_whatever_the_loader_processes(data):
    first = curve(run(data, CFG))
    assert curve(run(data, CFG)) == first
    # each image's augmentation is seeded by (seed, epoch, index): worker processes change nothing
    assert curve(run(data, dataclasses.replace(CFG, num_workers=2))) == first
    assert curve(run(data, dataclasses.replace(CFG, seed=1))) != first


def test_resume_from_a_saved_state_is_exact(data):
    cfg = dataclasses.replace(CFG, epochs=3, ema_decay=0.9)
    straight = curve(run(data, cfg))
    state = run(data, dataclasses.replace(cfg, epochs=2)).state_dict()
    torch.manual_seed(123)  # a new process: other RNG state, all replaced by the saved state
    resumed = run(data, cfg, resume=state)
    assert curve(resumed) == straight
    assert resumed.eval_model is resumed.ema.module


def test_non_finite_loss_stops_with_clear_message(data):
    model = build_model(ModelConfig.create("resnet18", len(data.classes), 1, 0.1, 32))
    with torch.no_grad():
        model.classifier.multi_head[0].head.weight.fill_(float("nan"))
    trainer = Trainer(model, data, CFG)
    with pytest.raises(NonFiniteLoss, match="training loss is nan at epoch 1, step 0; lower train.lr"):
        trainer.fit()
