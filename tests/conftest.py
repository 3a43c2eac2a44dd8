"""Shared fixtures: MLflow in a temp SQLite file, a tiny params.yaml derived from the repository's conf/ (never
from the workspace's params.yaml, which `dvc exp run` rewrites)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
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


@functools.cache
def _composed() -> str:
    """params.yaml as conf/ composes it (Hydra, as `dvc exp run` does), made once per session in a temp folder."""
    from dvc.utils.hydra import compose_and_dump

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "params.yaml"
        compose_and_dump(out, str(REPO / "conf"), None, "config", str(REPO), [])
        return out.read_text()


def repo_params() -> dict:
    """The repository's params as conf/ composes them: what params.yaml holds until an experiment changes it."""
    return yaml.safe_load(_composed())


def merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict):
            merge(base.setdefault(key, {}), value)
        else:
            base[key] = value
    return base


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory):
    """(process, path) of an empty MLflow database being made once, in the background: migrating a new SQLite
    store takes seconds, copying a made one milliseconds."""
    folder = tmp_path_factory.mktemp("mlflow-template")
    code = "import mlflow, sys; mlflow.set_tracking_uri(sys.argv[1]); mlflow.search_experiments(max_results=1)"
    process = subprocess.Popen([sys.executable, "-c", code, f"sqlite:///{folder / 'mlflow.db'}"], cwd=folder,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    yield process, folder / "mlflow.db"
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def new_store(folder: Path, mlflow_template) -> str:
    """The URI of a new MLflow store, folder/mlflow.db: a copy of the made database once it is ready."""
    process, template = mlflow_template
    if process.poll() == 0:
        shutil.copyfile(template, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def mlflow_store(tmp_path_factory, monkeypatch, mlflow_template) -> str:
    """Each test's own MLflow store."""
    uri = new_store(tmp_path_factory.mktemp("mlflow"), mlflow_template)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return uri


@pytest.fixture
def tiny_params(tmp_path, monkeypatch) -> Path:
    """The repository's params.yaml with tiny sizes, written to tmp_path, which becomes the working folder."""
    params = merge(repo_params(), TINY)
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
