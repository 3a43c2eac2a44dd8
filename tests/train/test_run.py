"""train(cfg, data, paths): best.pt is the first epoch with the highest validation mAP (the one checkpoint a run
keeps), and the resumable state goes when the run completes."""

import dataclasses

import numpy as np
from helpers import train_config

from csra.data.prepared import TrainData
from csra.model.checkpoints import load_checkpoint
from csra.train.loop import Trainer
from csra.train.run import TrainPaths, train


def test_best_checkpoint_is_the_first_epoch_with_the_highest_val_map(tiny_data, tmp_path, monkeypatch):
    classes, trainval, test = tiny_data
    targets = np.tile([[1, -1], [-1, 1], [1, 1], [-1, -1]], (1, len(classes) // 2))  # one column per class
    perfect = (targets == 1).astype(float)
    monkeypatch.setattr(Trainer, "validate", lambda self: (perfect, targets))  # both epochs: val mAP 100
    paths = TrainPaths(tmp_path / "best.pt", tmp_path / "state.pt")
    result = train(dataclasses.replace(train_config(), epochs=2), TrainData(trainval[:8], test, classes, "voc07"),
                   paths)
    assert result.best_epoch == 1 and result.best_val_mAP == 100.0  # the tie keeps the earlier epoch
    assert [row["best_epoch"] for row in result.history] == [1, 1]
    best = load_checkpoint(paths.best)
    assert best["epoch"] == 1 and best["val_mAP"] == 100.0 and best["selection"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]  # the state is gone, no other weights
