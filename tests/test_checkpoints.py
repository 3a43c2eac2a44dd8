import pickle

import pytest
import torch

from csra.checkpoints import load_checkpoint, load_model, save_checkpoint
from csra.errors import CSRAError
from csra.model import ModelConfig, build_model


def test_round_trip_same_logits_config_and_classes(tmp_path):
    model = build_model(ModelConfig.create("resnet18", 3, 2, 0.3, 32)).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, ["a", "b", "c"], {"train.lam": 0.3}, epoch=4)
    loaded, saved = load_model(path)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.config == model.config
    assert saved["classes"] == ["a", "b", "c"] and saved["params"] == {"train.lam": 0.3} and saved["epoch"] == 4
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


class Payload:
    pass


def test_refuses_files_that_need_unpickling(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "csra-checkpoint-v1", "x": Payload()}, f)
    torch.save({"obj": Payload()}, tmp_path / "obj.pt")
    for bad in (path, tmp_path / "obj.pt"):
        with pytest.raises(CSRAError, match="refused|not a readable"):
            load_checkpoint(bad)


def test_other_files_are_clear_errors(tmp_path):
    with pytest.raises(CSRAError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CSRAError, match="not a CSRA pipeline checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CSRAError, match="not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
