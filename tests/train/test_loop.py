"""The trainer: the same history for the same seed whatever the loader processes, exact resume, the NaN stop
without a host sync per step."""

import dataclasses

import pytest
import torch
from helpers import train_config

from csra.data.prepared import TrainData
from csra.distributed import SINGLE
from csra.model.network import ModelConfig, build_model
from csra.train import loop
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


HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


def count_host_reads(monkeypatch):
    """Counts every way a tensor's value reaches Python (on a GPU each one waits for it)."""
    calls = {"n": 0}

    def counting(original):
        def counted(self, *args, **kwargs):
            calls["n"] += 1
            return original(self, *args, **kwargs)

        return counted

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
    return calls


def nan_from_step(trainer, first_bad):
    criterion, calls = trainer.criterion, {"n": 0}

    def wrapped(logits, targets):
        calls["n"] += 1
        loss = criterion(logits, targets)
        return loss * float("nan") if calls["n"] > first_bad else loss

    trainer.criterion = wrapped


@pytest.mark.parametrize("every", [3, 25])
def test_losses_are_read_once_per_interval_not_per_step(data, monkeypatch, every):
    monkeypatch.setattr(loop, "SYNC_EVERY", every)
    trainer = build_trainer(dataclasses.replace(CFG, batch_size=2), data, None, SINGLE, False)
    trainer.loader = list(trainer.loader)  # the batches made beforehand: the augmentation reads random numbers
    steps = len(trainer.loader)  # 16 images, two per step
    reads = count_host_reads(monkeypatch)
    trainer.train_one_epoch()
    assert reads["n"] == -(-steps // every) and steps == 8  # the old loop read twice per step: 16


@pytest.mark.parametrize("every", [3, 25])
def test_a_nan_found_late_still_names_its_step(data, monkeypatch, every):
    monkeypatch.setattr(loop, "SYNC_EVERY", every)
    trainer = build_trainer(dataclasses.replace(CFG, batch_size=2), data, None, SINGLE, False)
    trainer.loader = list(trainer.loader)
    nan_from_step(trainer, 5)
    reads = count_host_reads(monkeypatch)
    with pytest.raises(NonFiniteLoss, match="^training loss is nan at epoch 1, step 5; lower train.lr$"):
        trainer.train_one_epoch()
    assert reads["n"] <= 2  # read at steps 2 and 5 (every 3) or at the epoch's end (every 25), not per step


def test_an_epoch_reads_the_same_loss_as_one_read_per_step(data):
    # the sum of the per-step losses, in step order, as before: the history does not change
    trainer = build_trainer(dataclasses.replace(CFG, batch_size=4), data, None, SINGLE, False)
    per_step = []
    criterion = trainer.criterion

    def recorded(logits, targets):
        loss = criterion(logits, targets)
        per_step.append((loss.item(), len(targets)))
        return loss

    trainer.criterion = recorded
    loss, _, _ = trainer.train_one_epoch()
    total = 0.0
    for value, size in per_step:
        total += value * size
    assert loss == total / sum(size for _, size in per_step)
