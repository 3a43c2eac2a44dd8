"""train(cfg, data, paths): best.pt is the first epoch with the highest validation mAP, model.pt the last epoch,
and the resumable state goes when the run completes."""

import dataclasses

import numpy as np
from helpers import train_config

from csra.data.prepared import TrainData
from csra.model.checkpoints import load_checkpoint
from csra.train.loop import Trainer
from csra.train.run import TrainPaths, train


def test_best_checkpoint_is_the_first_epoch_with_the_highest_val_map(tiny_data, tmp_path, monkeypatch):
    classes, trainval, test = tiny_data
    targets = np.array([[1, -1], [-1, 1], [1, 1], [-1, -1]])
    scores = {"perfect": (targets == 1).astype(float),
              "worse": np.array([[0.1, 0.9], [0.9, 0.1], [0.2, 0.2], [0.8, 0.8]])}
    calls = iter(["worse", "perfect", "perfect"])  # epochs 2 and 3 tie at mAP 100
    monkeypatch.setattr(Trainer, "validate", lambda self: (scores[next(calls)], targets))
    paths = TrainPaths(tmp_path / "best.pt", tmp_path / "model.pt", tmp_path / "state.pt")
    result = train(dataclasses.replace(train_config(), epochs=3), TrainData(trainval[:8], test, classes, "voc07"),
                   paths)
    assert result.best_epoch == 2 and result.best_val_mAP == 100.0
    assert [row["best_epoch"] for row in result.history] == [1, 2, 2]
    best, last = load_checkpoint(paths.best), load_checkpoint(paths.last)
    assert best["epoch"] == 2 and best["val_mAP"] == 100.0
    assert last["epoch"] == 3 and last["val_mAP"] == 100.0
    assert not paths.state.exists()
