"""The trainer: the same history for the same seed whatever the loader processes, a new order every epoch, exact
resume (every part of the state), the best-epoch rule, the NaN stop without a host sync per step."""

import dataclasses
import random

import numpy as np
import pytest
import torch
from helpers import train_config

from csra.data import loading
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


def rows(trainer):
    return [{k: v for k, v in row.items() if k != "images_per_s"} for row in trainer.history]


def same(a, b):
    """Equal nested state: dicts, lists, tuples, tensors (values and dtype), numbers."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b) and all(
            same(x, y) for x, y in zip(a, b))
    return a == b


def draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


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
    straight = run(data, cfg)
    state = run(data, dataclasses.replace(cfg, epochs=2)).state_dict()
    torch.manual_seed(123)  # a new process: other RNG state, all replaced by the saved state
    resumed = run(data, cfg, resume=state)
    assert curve(resumed) == curve(straight)
    assert rows(resumed) == rows(straight) and resumed.best == straight.best  # best_epoch column included
    assert resumed.eval_model is resumed.ema.module
    for part in ("model", "ema", "optimizer", "scheduler"):  # the same weights, averages and momentum at the end
        assert same(resumed.state_dict()[part], straight.state_dict()[part]), part


def test_every_part_of_the_state_round_trips(data):
    """What a resume restores: weights, EMA, optimiser (momentum buffers), scheduler, grad scaler, epoch, history,
    best epoch and every RNG stream. A CPU run has no active grad scaler: an enabled one stands in for CUDA's."""
    cfg = dataclasses.replace(CFG, epochs=1, ema_decay=0.9)
    trainer = build_trainer(cfg, data, None, SINGLE, False)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    trainer.fit()
    state = trainer.state_dict()
    after_save = draws()
    assert state["epoch"] == 1 and state["best"]["epoch"] == 1 and len(state["history"]) == 1
    assert state["scheduler"]["last_epoch"] == 2  # 16 images, batch 8: two steps
    assert all(s["momentum_buffer"].abs().sum() > 0 for s in state["optimizer"]["state"].values())
    assert state["scaler"]["scale"] == 2.0**10 and state["scaler"]["_growth_tracker"] == 2

    fresh = build_trainer(cfg, data, None, SINGLE, False)
    fresh.scaler = torch.amp.GradScaler("cpu", growth_interval=3)
    random.seed(7), np.random.seed(7), torch.manual_seed(7)  # another process's RNG streams
    fresh.load_state_dict(state)
    assert draws() == after_save
    fresh.load_state_dict(state)
    restored = fresh.state_dict()
    for part in ("model", "ema", "optimizer", "scheduler", "scaler", "epoch", "history", "best", "rng"):
        assert same(restored[part], state[part]), part
    assert fresh.epoch == 1 and fresh.scaler.get_scale() == 2.0**10


def test_a_new_order_every_epoch(data, monkeypatch):
    seen = []
    original = loading.MultiLabelDataset.__getitem__
    position = {item["img_path"]: i for i, item in enumerate(data.train_items)}  # validation images are others

    def record(self, index):
        if self.items[index]["img_path"] in position:
            seen.append(position[self.items[index]["img_path"]])
        return original(self, index)

    monkeypatch.setattr(loading.MultiLabelDataset, "__getitem__", record)
    n = len(data.train_items)
    run(data, dataclasses.replace(CFG, epochs=2))
    assert len(seen) == 2 * n and sorted(seen[:n]) == sorted(seen[n:]) == list(range(n))
    assert seen[:n] != seen[n:]  # reshuffled for the second epoch


def scripted_validation(monkeypatch, ranks):
    """Epoch e's validation scores rank the positives first ('perfect', mAP 100) or not ('worse', mAP < 100)."""
    targets = np.array([[1, -1], [-1, 1], [1, 1], [-1, -1]])
    scores = {"perfect": (targets == 1).astype(float),
              "worse": np.array([[0.1, 0.9], [0.9, 0.1], [0.2, 0.2], [0.8, 0.8]])}
    calls = iter(ranks)
    monkeypatch.setattr(Trainer, "validate", lambda self: (scores[next(calls)], targets))


def test_best_epoch_is_the_first_with_the_highest_val_map(data, monkeypatch):
    scripted_validation(monkeypatch, ["worse", "perfect", "perfect"])
    trainer = run(dataclasses.replace(data, train_items=data.train_items[:8]), dataclasses.replace(CFG, epochs=3))
    maps = [r["val_mAP"] for r in trainer.history]
    assert maps[0] < maps[1] == maps[2] == 100.0
    assert [r["best_epoch"] for r in trainer.history] == [1, 2, 2]  # a tie keeps the earlier epoch
    assert trainer.best == {"epoch": 2, "val_mAP": 100.0}


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
