"""The steps of a run: a new order every epoch, every part of the training objects' state round-trips, the NaN stop
without a host sync per step, and the epoch's loss as the per-step losses give it."""

import dataclasses

import pytest
import torch
from helpers import same, train_config

from csra.data import loading
from csra.data.prepared import TrainData
from csra.model.network import ModelConfig, build_model
from csra.train import loop
from csra.train.loop import NonFiniteLoss, build_training, make_training, train_one_epoch

CFG = train_config()
CPU = torch.device("cpu")


@pytest.fixture
def data(tiny_data):
    classes, trainval, test = tiny_data
    return TrainData(trainval, test, classes, "voc07")


def test_a_new_order_every_epoch(data, monkeypatch):
    seen = []
    original = loading.MultiLabelDataset.__getitem__
    position = {item["img_path"]: i for i, item in enumerate(data.train_items)}

    def record(self, index):
        seen.append(position[self.items[index]["img_path"]])
        return original(self, index)

    monkeypatch.setattr(loading.MultiLabelDataset, "__getitem__", record)
    n = len(data.train_items)
    t = build_training(CFG, data, CPU)
    train_one_epoch(t, 0, 2)
    train_one_epoch(t, 1, 2)
    assert len(seen) == 2 * n and sorted(seen[:n]) == sorted(seen[n:]) == list(range(n))
    assert seen[:n] != seen[n:]  # reshuffled for the second epoch


def test_every_part_of_the_training_objects_round_trips(data):
    """Weights, EMA, optimiser (momentum buffers), scheduler and grad scaler. A CPU run has no active grad scaler: an
    enabled one stands in for CUDA's."""
    cfg = dataclasses.replace(CFG, ema_decay=0.9)
    t = build_training(cfg, data, CPU)
    t.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    train_one_epoch(t, 0, 1)
    state = t.state_dict()
    assert state["scheduler"]["last_epoch"] == 2  # 16 images, batch 8: two steps
    assert all(s["momentum_buffer"].abs().sum() > 0 for s in state["optimizer"]["state"].values())
    assert state["scaler"]["scale"] == 2.0**10 and state["scaler"]["_growth_tracker"] == 2

    fresh = build_training(cfg, data, CPU)
    fresh.scaler = torch.amp.GradScaler("cpu", growth_interval=3)
    fresh.load_state_dict(state)
    restored = fresh.state_dict()
    for part in ("model", "ema", "optimizer", "scheduler", "scaler"):
        assert same(restored[part], state[part]), part
    assert fresh.scaler.get_scale() == 2.0**10 and fresh.eval_model is fresh.ema.module


def test_non_finite_loss_stops_with_clear_message(data):
    model = build_model(ModelConfig.create("resnet18", len(data.classes), 1, 0.1, 32))
    with torch.no_grad():
        model.classifier.multi_head[0].head.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLoss, match="training loss is nan at epoch 1, step 0; lower train.lr"):
        train_one_epoch(make_training(model, data, CFG, CPU), 0, 2)


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


def nan_from_step(t, first_bad):
    criterion, calls = t.criterion, {"n": 0}

    def wrapped(logits, targets):
        calls["n"] += 1
        loss = criterion(logits, targets)
        return loss * float("nan") if calls["n"] > first_bad else loss

    t.criterion = wrapped


@pytest.mark.parametrize("every", [3, 25])
def test_losses_are_read_once_per_interval_not_per_step(data, monkeypatch, every):
    monkeypatch.setattr(loop, "SYNC_EVERY", every)
    t = build_training(dataclasses.replace(CFG, batch_size=2), data, CPU)
    t.loader = list(t.loader)  # the batches made beforehand: the augmentation reads random numbers
    steps = len(t.loader)  # 16 images, two per step
    reads = count_host_reads(monkeypatch)
    train_one_epoch(t, 0, 2)
    assert reads["n"] == -(-steps // every) and steps == 8  # the old loop read twice per step: 16


@pytest.mark.parametrize("every", [3, 25])
def test_a_nan_found_late_still_names_its_step(data, monkeypatch, every):
    monkeypatch.setattr(loop, "SYNC_EVERY", every)
    t = build_training(dataclasses.replace(CFG, batch_size=2), data, CPU)
    t.loader = list(t.loader)
    nan_from_step(t, 5)
    reads = count_host_reads(monkeypatch)
    with pytest.raises(NonFiniteLoss, match="^training loss is nan at epoch 1, step 5; lower train.lr$"):
        train_one_epoch(t, 0, 2)
    assert reads["n"] <= 2  # read at steps 2 and 5 (every 3) or at the epoch's end (every 25), not per step


def test_an_epoch_reads_the_same_loss_as_one_read_per_step(data):
    # the sum of the per-step losses, in step order, as before: the history does not change
    t = build_training(dataclasses.replace(CFG, batch_size=4), data, CPU)
    per_step = []
    criterion = t.criterion

    def recorded(logits, targets):
        loss = criterion(logits, targets)
        per_step.append((loss.item(), len(targets)))
        return loss

    t.criterion = recorded
    loss, *_ = train_one_epoch(t, 0, 2)
    total = 0.0
    for value, size in per_step:
        total += value * size
    assert loss == total / sum(size for _, size in per_step)
