"""train(cfg, data, paths): the same history for the same seed whatever the loader processes; best.pt is the first
epoch with the highest validation mAP (the one checkpoint a run keeps); the hooks see each epoch once its files are
written (best.pt before the state); a resume ends exactly like an uninterrupted run; the resumable state goes when
the run completes."""

import dataclasses
import logging
import random

import numpy as np
import pytest
import torch
from helpers import same, train_config, train_on_cpu, train_paths

from csra.data.prepared import TrainData
from csra.model.checkpoints import load_checkpoint_model
from csra.model.weights import load_weights_only
from csra.train import run as run_module
from csra.train.run import TIMINGS, TrainHooks
from csra.train.state import find_resume, set_rng_state

CFG = train_config()


class Stop(Exception):
    """Raised by a hook to leave a run unfinished."""


class Watch(TrainHooks):
    """Records what the hooks saw (the rows, which epochs the run's files were of, with_draws: the RNG's next draws)
    and can stop the run after epoch stop_after or in on_end."""

    def __init__(self, paths, stop_after=None, stop_at_end=False, with_draws=False):
        self.paths, self.stop_after, self.stop_at_end, self.with_draws = paths, stop_after, stop_at_end, with_draws
        self.rows, self.histories, self.files, self.draws, self.ended = [], [], [], [], []

    def on_epoch(self, row, history):
        self.rows.append(row)
        self.histories.append(history)
        state = load_weights_only(self.paths.state, "training state")
        best = load_weights_only(self.paths.best, "checkpoint")  # building its model would draw from the RNG
        self.files.append((best["epoch"], state["epoch"]))
        if self.with_draws:
            self.draws.append(draws())  # the RNG right after the state was saved (these draws move it on)
        if row["epoch"] == self.stop_after:
            raise Stop

    def on_end(self, result):
        self.ended.append((result, self.paths.state.is_file(), len(self.rows)))
        if self.stop_at_end:
            raise Stop


def draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def curve(result):
    return [(r["train_loss"], r["val_mAP"]) for r in result.history]


def rows(history):
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in history]


@pytest.fixture
def data(tiny_data):
    classes, trainval, test = tiny_data
    return TrainData(trainval, test, classes, "voc07")


def scripted_validation(monkeypatch, data, ranks):
    """Epoch e's validation scores rank the positives first ('perfect', mAP 100) or last ('worse', mAP < 100)."""
    targets = np.tile([[1, -1], [-1, 1], [1, 1], [-1, -1]], (1, len(data.classes) // 2))  # a column per class
    scores = {"perfect": (targets == 1).astype(float), "worse": np.where(targets == 1, 0.2, 0.8)}
    calls = iter(ranks)
    monkeypatch.setattr(run_module, "validate", lambda t, data, cfg: (scores[next(calls)], targets))


def test_same_seed_same_history_whatever_the_loader_processes(data, tmp_path):
    first = curve(train_on_cpu(tmp_path / "a", data, CFG))
    assert curve(train_on_cpu(tmp_path / "b", data, CFG)) == first
    # each image's augmentation is seeded by (seed, epoch, index): worker processes change nothing
    assert curve(train_on_cpu(tmp_path / "c", data, dataclasses.replace(CFG, num_workers=2))) == first
    assert curve(train_on_cpu(tmp_path / "d", data, dataclasses.replace(CFG, seed=1))) != first


def test_best_checkpoint_is_the_first_epoch_with_the_highest_val_map(data, tmp_path, monkeypatch):
    scripted_validation(monkeypatch, data, ["worse", "perfect", "perfect"])
    small = dataclasses.replace(data, train_items=data.train_items[:8])
    result = train_on_cpu(tmp_path, small, dataclasses.replace(CFG, epochs=3))
    maps = [r["val_mAP"] for r in result.history]
    assert maps[0] < maps[1] == maps[2] == 100.0
    assert [r["best_epoch"] for r in result.history] == [1, 2, 2]  # a tie keeps the earlier epoch
    assert result.best_epoch == 2 and result.best_val_mAP == 100.0
    best = load_checkpoint_model(tmp_path / "best.pt")[1]
    assert best["epoch"] == 2 and best["val_mAP"] == 100.0 and best["selection"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]  # the state is gone, no other weights


def test_the_checkpoint_holds_the_recipe_once_and_the_callers_params(data, tmp_path):
    cfg = dataclasses.replace(CFG, epochs=1)
    train_on_cpu(tmp_path, data, cfg, params={"data.dataset": "voc07", "train.out_dir": "results/train"})
    best = load_checkpoint_model(tmp_path / "best.pt")[1]
    assert best["recipe"] == cfg.recipe() and "num_workers" not in best["recipe"]
    assert best["params"] == {"data.dataset": "voc07", "train.out_dir": "results/train"}
    assert best["model_config"]["num_classes"] == len(data.classes)


def test_hooks_see_each_epoch_once_in_order_after_its_files_are_written(data, tmp_path):
    paths = train_paths(tmp_path)
    watch = Watch(paths)
    result = train_on_cpu(tmp_path, data, dataclasses.replace(CFG, epochs=3), hooks=watch)
    assert [row["epoch"] for row in watch.rows] == [1, 2, 3] and watch.rows == result.history
    assert watch.histories == [result.history[:1], result.history[:2], result.history]
    # best.pt is that of the best epoch so far, and the state that of this epoch
    assert watch.files == [(row["best_epoch"], row["epoch"]) for row in result.history]
    assert watch.ended == [(result, True, 3)]  # once, after the last epoch, while the state is still there
    assert not paths.state.exists()


def test_every_state_saved_names_a_best_checkpoint_already_on_disk(data, tmp_path, monkeypatch):
    """An epoch end writes best.pt before the state: a run killed between the two leaves a state whose best epoch's
    checkpoint is there, never one that names a best.pt not yet written."""
    scripted_validation(monkeypatch, data, ["worse", "perfect"])
    paths, saved = train_paths(tmp_path), []

    def save_state(path, state):  # the moment after which a kill leaves this state behind
        best = state["best"]["epoch"]
        saved.append((best, paths.best.is_file() and load_checkpoint_model(paths.best)[1]["epoch"]))
        real_save_state(path, state)

    real_save_state = run_module.save_state
    monkeypatch.setattr(run_module, "save_state", save_state)
    small = dataclasses.replace(data, train_items=data.train_items[:8])
    train_on_cpu(tmp_path, small, dataclasses.replace(CFG, epochs=2))
    assert saved == [(1, 1), (2, 2)]


def test_a_failing_end_hook_keeps_the_state_and_the_run_resumes_from_it(data, tmp_path):
    cfg = dataclasses.replace(CFG, epochs=1)
    paths = train_paths(tmp_path)
    with pytest.raises(Stop):
        train_on_cpu(tmp_path, data, cfg, hooks=Watch(paths, stop_at_end=True))
    state = find_resume(paths.state, cfg, data, "always", 1)
    watch = Watch(paths)
    result = train_on_cpu(tmp_path, data, cfg, resume=state, hooks=watch)
    assert result.resumed_from == 1 and rows(result.history) == rows(state["history"])
    assert watch.rows == [] and len(watch.ended) == 1 and not paths.state.exists()


def test_resume_from_a_saved_state_is_exact(data, tmp_path):
    """Straight through 3 epochs, or stopped after epoch 2 and resumed in what stands for a new process: the same
    history, best epoch, checkpoint and final state (weights, EMA, optimiser, scheduler, every RNG stream)."""
    cfg = dataclasses.replace(CFG, epochs=3, ema_decay=0.9)
    straight_paths, paths = train_paths(tmp_path / "straight"), train_paths(tmp_path / "resumed")
    with pytest.raises(Stop):
        train_on_cpu(tmp_path / "straight", data, cfg, hooks=Watch(straight_paths, stop_at_end=True))
    with pytest.raises(Stop):
        train_on_cpu(tmp_path / "resumed", data, cfg, hooks=Watch(paths, stop_after=2))
    state = find_resume(paths.state, cfg, data, "always", 1)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    torch.manual_seed(123)  # a new process: other RNG state, all replaced by the saved state
    watch = Watch(paths, stop_at_end=True)
    with pytest.raises(Stop):
        train_on_cpu(tmp_path / "resumed", data, cfg, resume=state, hooks=watch)
    resumed, straight = watch.ended[0][0], load_weights_only(straight_paths.state, "training state")
    assert resumed.resumed_from == 2 and [row["epoch"] for row in watch.rows] == [3]
    final = load_weights_only(paths.state, "training state")
    assert rows(final["history"]) == rows(straight["history"]) and final["best"] == straight["best"]
    for part in ("model", "ema", "optimizer", "scheduler", "rng"):
        assert same(final[part], straight[part]), part
    a, b = load_checkpoint_model(paths.best)[1], load_checkpoint_model(straight_paths.best)[1]
    weights = a.pop("state_dict"), b.pop("state_dict")
    assert a == b and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])


def test_every_part_of_the_state_round_trips(data, tmp_path):
    """What the saved state holds besides the training objects: epoch, history, best epoch, every RNG stream, the
    number of processes, the settings' fingerprint and the caller's extra."""
    cfg = dataclasses.replace(CFG, epochs=1)
    paths = train_paths(tmp_path)
    watch = Watch(paths, stop_at_end=True, with_draws=True)
    with pytest.raises(Stop):
        train_on_cpu(tmp_path, data, cfg, hooks=watch, extra_state={"run_id": "abc"})
    state = find_resume(paths.state, cfg, data, "always", 1)
    assert state["epoch"] == 1 and state["best"] == {"epoch": 1, "val_mAP": watch.rows[0]["val_mAP"]}
    assert state["history"] == watch.rows and state["world_size"] == 1 and state["extra"] == {"run_id": "abc"}
    random.seed(7), np.random.seed(7), torch.manual_seed(7)  # another process's RNG streams
    set_rng_state(state["rng"])
    assert draws() == watch.draws[0]


def test_a_resume_whose_best_checkpoint_is_gone_keeps_the_best_of_the_remaining_epochs(data, tmp_path, monkeypatch,
                                                                                        caplog):
    scripted_validation(monkeypatch, data, ["perfect", "worse", "worse"])
    cfg = dataclasses.replace(CFG, epochs=2)
    small = dataclasses.replace(data, train_items=data.train_items[:8])
    paths = train_paths(tmp_path)
    with pytest.raises(Stop):
        train_on_cpu(tmp_path, small, cfg, hooks=Watch(paths, stop_after=1))
    paths.best.unlink()
    monkeypatch.setattr(logging.getLogger("csra"), "propagate", True)  # a stage run in this process may have cut it
    with caplog.at_level(logging.WARNING):
        result = train_on_cpu(tmp_path, small, cfg, resume=find_resume(paths.state, cfg, small, "always", 1))
    assert "best.pt of epoch 1 is gone; the best of the remaining epochs will be kept" in caplog.text
    assert result.best_epoch == 2 and result.history[1]["best_epoch"] == 2
    assert load_checkpoint_model(paths.best)[1]["epoch"] == 2


def test_unreadable_training_images_reach_the_hooks_once_with_their_paths(data, tmp_path):
    """An image a loader process cannot decode is left out (skip_bad) and told to the hooks after the epoch that
    first met it, not again in later epochs."""
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    items = [dict(item) for item in data.train_items]
    items[3]["img_path"] = str(broken)

    class Skips(TrainHooks):
        def __init__(self):
            self.seen = []

        def on_skipped(self, epoch, images):
            self.seen.append((epoch, images))

    hooks = Skips()
    cfg = dataclasses.replace(CFG, epochs=2, num_workers=1)
    train_on_cpu(tmp_path / "run", dataclasses.replace(data, train_items=items, skip_bad=True), cfg, hooks=hooks)
    assert hooks.seen == [(1, [("train", str(broken), "unreadable")])]
