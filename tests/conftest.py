"""The shared fixtures (plain helper functions live in helpers.py): MLflow in a temp SQLite file, a tiny params.yaml
derived from the repository's conf/ (never from the workspace's params.yaml, which `dvc exp run` rewrites), tiny
data, a tiny checkpoint, and the session's one tiny trained workspace with a private copy for each test that writes."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Tiny models gain nothing from several threads, and OpenMP threads that wait for a busy core slow every step
# tenfold on a shared machine: one thread per process, also in the DVC and torchrun subprocesses.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import yaml  # noqa: E402
from helpers import TINY, copy_workspace, make_tiny_checkpoint, merge, new_store, repo_params, run_chain  # noqa: E402

# What the imports above made (torch, MLflow, DVC, Optuna: millions of objects) lives as long as the worker: frozen,
# Python's collections stop walking it again and again (about 3% of a test file's time)
gc.freeze()

# The files that take longest (their whole pipelines, servers and studies: `make test` prints the slowest tests),
# handed to the two workers first, so that no long file starts last and runs alone at the end.
LONGEST_FIRST = ("stages/test_dvc.py", "stages/test_own_data.py", "stages/team/test_stack.py",
                 "stages/test_train.py", "stages/test_score.py", "stages/test_score_docs.py",
                 "stages/tracking/test_outage.py",
                 "stages/test_records.py", "stages/search/test_study.py", "test_readme.py", "deploy/test_export.py",
                 "deploy/test_serving.py", "train/test_run.py")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        path = Path(str(item.fspath)).relative_to(Path(__file__).parent).as_posix()
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order


@pytest.fixture(scope="session", autouse=True)
def session_tmpdir(tmp_path_factory):
    """The system temp folder of the code under test and of its subprocesses (a killed search worker's trial folder,
    say): the session's own, removed with it, not /tmp."""
    import tempfile

    folder = tmp_path_factory.mktemp("tmp")
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", str(folder))
    patch.setattr(tempfile, "tempdir", None)
    yield folder
    patch.undo()


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


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    return make_tiny_checkpoint(tmp_path / "ckpt" / "model.pt")


@dataclass(frozen=True)
class Trained:
    """A folder where prepare, train, evaluate and demo ran once through the CLI on the tiny built-in dataset."""

    root: Path  # params.yaml, data/prepared, results/{train,evaluate,demo}, mlflow.db and mlartifacts
    store: str  # the URI of its MLflow store, root/mlflow.db
    outputs: dict  # what each stage printed


@pytest.fixture(scope="session")
def trained_workspace(tmp_path_factory, mlflow_template) -> Trained:
    """The session's one tiny trained workspace: params.yaml = repo_params() with TINY, `csra prepare`, `train`,
    `evaluate` and `demo` run once, tracking to its own MLflow store. Read it, never write to it: a test that runs a
    command there takes its own copy (the `workspace` fixture), so that no test changes another's inputs."""
    root = tmp_path_factory.mktemp("trained")
    store = new_store(root, mlflow_template)
    outputs = run_chain(root, store)
    return Trained(root, store, outputs)


@pytest.fixture
def workspace(trained_workspace, tmp_path, monkeypatch) -> Path:
    """This test's own copy of the trained workspace, made the working folder, with MLflow (the environment and
    this process) pointed at the copy of its store."""
    import mlflow

    root = tmp_path / "workspace"
    store = copy_workspace(trained_workspace.root, root)
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    mlflow.set_tracking_uri(store)
    return root
