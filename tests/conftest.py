"""Shared fixtures: MLflow in a temp SQLite file, a tiny params.yaml derived from the repository's."""

from __future__ import annotations

import os
from pathlib import Path

# Tiny models gain nothing from several threads, and OpenMP threads that wait for a busy core slow every step
# tenfold on a shared machine: one thread per process, also in the DVC and torchrun subprocesses.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "prepare": {"synthetic": {"num_trainval": 24, "num_test": 16, "num_demo": 3, "width": 64, "height": 48}},
    "train": {"img_size": 32, "epochs": 2, "batch_size": 8, "num_workers": 0, "device": "cpu"},
    "evaluate": {"batch_size": 16, "num_workers": 0, "device": "cpu"},
    "export": {"onnx": False},  # the pipeline tests skip the slowest export; test_export covers ONNX
}


def merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict):
            merge(base.setdefault(key, {}), value)
        else:
            base[key] = value
    return base


@pytest.fixture(autouse=True)
def mlflow_store(tmp_path_factory, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return uri


@pytest.fixture
def tiny_params(tmp_path, monkeypatch) -> Path:
    """The repository's params.yaml with tiny sizes, written to tmp_path, which becomes the working folder."""
    params = merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """(classes, trainval items, test items) of a tiny built-in dataset at 64x48 px."""
    from csra.data.synthetic import CLASSES, SyntheticSpec, generate_synthetic
    from csra.data.voc import convert_voc07

    spec = SyntheticSpec(seed=0, num_trainval=16, num_test=8, num_demo=0, width=64, height=48)
    root = generate_synthetic(tmp_path_factory.mktemp("tiny") / "synthetic", spec)
    trainval, test = convert_voc07(root, CLASSES)
    return CLASSES, trainval, test


def make_tiny_checkpoint(path: Path) -> Path:
    """A randomly initialised ResNet-18 at 32 px with 2 heads and 3 classes, saved as our checkpoint."""
    import torch

    from csra.model.checkpoints import save_checkpoint
    from csra.model.network import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig.create("resnet18", 3, num_heads=2, lam=0.1, img_size=32)).eval()
    return save_checkpoint(path, model, ["circle", "square", "triangle"], {})


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    return make_tiny_checkpoint(tmp_path / "ckpt" / "model.pt")
