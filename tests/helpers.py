"""The one place for the tests' plain helper functions; test files import them from here (`from helpers import …`).

Fixtures live in conftest.py (the MLflow store of each test, the tiny params, the tiny data and checkpoint, and the
session's one tiny trained workspace). Three helper modules stay apart because each is a subject of its own:
errorwalk.py walks the user errors of tests/stages/test_stage_errors.py; official.py (the model and its input) and
official_metrics.py (the metrics, numpy only, also run by bench/bench_scoring.py) are the independent
re-implementation of the official CSRA code that the model and metric tests compare against.

The CLI is called in-process one way: `run(*args)` gives (exit code, output); `ok(*args)` asserts exit code 0 and
gives the output."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from stages.cli import app

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "prepare": {"synthetic": {"num_trainval": 24, "num_test": 16, "num_demo": 3, "width": 64, "height": 48}},
    "train": {"img_size": 32, "epochs": 2, "batch_size": 8, "num_workers": 0, "device": "cpu"},
    "evaluate": {"batch_size": 16, "num_workers": 0, "device": "cpu"},
    "export": {"onnx": False},  # the pipeline tests skip the slowest export; test_export covers ONNX
}

runner = CliRunner()


# --- the CLI ---------------------------------------------------------------------------------------------------
def run(*args):
    """(exit code, output) of `csra *args`, in-process."""
    result = runner.invoke(app, [str(arg) for arg in args])
    return result.exit_code, result.output


def ok(*args):
    """The output of `csra *args`, which must succeed."""
    code, output = run(*args)
    assert code == 0, f"csra {' '.join(map(str, args))} exited {code}:\n{output}"
    return output


def assert_one_line_error(code, output, *needles):
    assert code == 1, output
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in errors[0]


# --- params ----------------------------------------------------------------------------------------------------
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


def tiny_params_dict() -> dict:
    """repo_params() with the tests' TINY sizes."""
    return merge(repo_params(), TINY)


def merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict):
            merge(base.setdefault(key, {}), value)
        else:
            base[key] = value
    return base


DELETE = object()


def edit_params(path, **changes):
    """Set dotted keys of a params file (or any YAML mapping, in its order): None writes null, DELETE removes the
    key."""
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = params
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


STAGES = ("prepare", "train", "evaluate", "demo", "export")


def stage_params(stage: str, path, overrides: dict | None = None):
    """What the stage reads of the params file at path (its schema, checked), after overrides."""
    import importlib

    from stages.params import load_params

    return load_params(importlib.import_module(f"stages.{stage}").Params, path, overrides)


def load_all_params(path, overrides: dict | None = None) -> dict:
    """Every stage's params from the file at path, checked as the stages check them (prepare first), flat."""
    flat: dict = {}
    for stage in STAGES:
        flat.update(stage_params(stage, path, overrides).flat())
    return flat


def train_config(**changes):
    """A TrainConfig for tiny CPU runs: resnet18 from scratch at 32 px, the paper's SGD schedule, 2 epochs."""
    from csra.train.config import TrainConfig

    values = dict(
        model="resnet18", pretrained="none", head="csra", num_heads=1, lam=0.1, img_size=32, optimizer="sgd", epochs=2,
        batch_size=8, lr=0.01, classifier_lr_mult=10.0, momentum=0.9, weight_decay=1e-4, warmup_epochs=2,
        step_size=4, gamma=0.1, loss="bce", label_smoothing=0.0, asl_gamma_neg=4.0, asl_gamma_pos=0.0,
        asl_clip=0.05, ema_decay=0.0, amp=True, channels_last=False, compile=False, sync_bn=False, deterministic=False,
        num_workers=0, device="cpu", seed=0, tune_thresholds=True,
    )
    return TrainConfig(**{**values, **changes})


# --- MLflow ----------------------------------------------------------------------------------------------------
def new_store(folder: Path, mlflow_template) -> str:
    """The URI of a new MLflow store, folder/mlflow.db: a copy of the made database (conftest's mlflow_template)
    once it is ready."""
    process, template = mlflow_template
    if process.poll() == 0:
        shutil.copyfile(template, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


def repoint_store(database: Path, old: Path, new: Path) -> None:
    """Make a copied MLflow database name the copy's folder: the experiments' artifact locations, the runs'
    artifact URIs and every other text that holds the old folder's path now hold the new one's, so that what a
    test writes through the copy lands in the copy."""
    with sqlite3.connect(database) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                name, kind = column[1], column[2].upper()
                if "CHAR" in kind or "TEXT" in kind or kind == "":
                    db.execute(f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?) WHERE "{name}" LIKE ?',
                               (str(old), str(new), f"%{old}%"))
    db.close()


def copy_workspace(source: Path, target: Path) -> str:
    """A private copy of a workspace (params, data, results and its MLflow store source/mlflow.db with its
    artifacts): the URI of the copy's store."""
    shutil.copytree(source, target)
    repoint_store(target / "mlflow.db", source, target)
    return f"sqlite:///{target / 'mlflow.db'}"


def training_run(checkpoint):
    """The MLflow run that trained this checkpoint (the latest, by the checkpoint's MD5), as the stages find it."""
    import mlflow

    from csra.fileio import file_md5
    from stages.tracking.runs import training_run_by_md5

    run = training_run_by_md5(mlflow, file_md5(checkpoint), execution="")
    assert run is not None, f"no training run made {checkpoint}"
    return run


# --- models and chains -----------------------------------------------------------------------------------------
def make_tiny_checkpoint(path: Path) -> Path:
    """A randomly initialised ResNet-18 at 32 px with 2 heads and 3 classes, saved as our checkpoint."""
    import torch

    from csra.model.checkpoints import save_checkpoint
    from csra.model.network import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig.create("resnet18", 3, num_heads=2, lam=0.1, img_size=32)).eval()
    return save_checkpoint(path, model, ["circle", "square", "triangle"], {})


CHAIN = ("prepare", "train", "evaluate", "demo")


def run_chain(root: Path, store: str, params: dict | None = None) -> dict[str, str]:
    """The output of each stage of CHAIN run through the CLI in root (made, with params.yaml = params or the tiny
    params), tracking to store."""

    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params or tiny_params_dict()))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", store)
        return {stage: ok(stage) for stage in CHAIN}


# --- training runs ---------------------------------------------------------------------------------------------
def same(a, b):
    """Equal nested state: dicts, lists, tuples, tensors (values and dtype), numbers."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b) and all(
            same(x, y) for x, y in zip(a, b))
    return a == b


def train_paths(folder: Path):
    """TrainPaths of a run in folder: best.pt and state.pt."""
    from csra.train.run import TrainPaths

    return TrainPaths(folder / "best.pt", folder / "state.pt")


def train_on_cpu(folder: Path, data, cfg, **kwargs):
    """The TrainResult of csra.train.run.train on the CPU, writing into folder (made)."""
    import torch

    from csra.train.run import train

    folder.mkdir(parents=True, exist_ok=True)
    return train(cfg, data, train_paths(folder), device=torch.device("cpu"), **kwargs)


# --- servers on loopback -----------------------------------------------------------------------------------------
WAIT_S = 120  # the longest a server may take to answer
BIN = Path(sys.executable).parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command, log, cwd=None, **env):
    """A server (or any long) process in a session of its own (so that its workers end with it), run in cwd (the
    test's working folder if None), its output in log."""
    with log.open("w") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd,
                                env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env})


def stop(server):
    """Kill a server's whole session at once: a test's server holds nothing to save (its SQLite store is safe from a
    kill), and a graceful stop (uvicorn's) takes seconds."""
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    server.wait(timeout=30)


def wait_until_answers(url, server, log):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"{url}: the server exited:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"no answer from {url} within {WAIT_S} s:\n{log.read_text()}")


def post_json(url, payload):
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def post_raw(url, body: bytes, content_type: str = "application/json"):
    """(status, parsed JSON or text) of a POST, error statuses included."""
    request = urllib.request.Request(url, body, {"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


# --- scratch projects ----------------------------------------------------------------------------------------
def tiny_conf(conf: Path) -> None:
    """Shrink the copied conf/ to the test's tiny sizes, and add a second recipe to switch to."""
    config = yaml.safe_load((conf / "config.yaml").read_text())
    recipe = yaml.safe_load((conf / "train" / "synthetic.yaml").read_text())
    merge(config, {group: values for group, values in TINY.items() if group != "train"})
    for key, value in TINY["train"].items():
        (recipe if key in recipe else config["train"])[key] = value
    (conf / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (conf / "train" / "synthetic.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    heads = {"defaults": ["synthetic", "_self_"], "recipe": "two_heads", "num_heads": 2, "lam": 0.5}
    (conf / "train" / "two_heads.yaml").write_text(yaml.safe_dump(heads, sort_keys=False))



GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


def sh(*args, cwd, timeout=600, log=None):
    """The output of a command that must succeed; with log, the output goes to that file instead (for a command
    that leaves a daemon behind, which would hold a captured pipe open until it exits)."""
    env = {**os.environ, **GIT_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if log is not None:
        with open(log, "w") as sink:
            result = subprocess.run(args, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout)
        assert result.returncode == 0, f"{' '.join(args)}\n{Path(log).read_text()}"
        return Path(log).read_text()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


PROJECT = ("csra/", "stages/", "conf/", ".dvc/", "data/", "dvc.yaml", ".dvcignore", ".gitignore")


def source_files(repo: Path) -> list[str]:
    """The repository's own files under PROJECT: those git tracks and new ones it does not ignore — never the user's
    DVC cache, MLflow store, results or prepared data, which git ignores."""
    listed = sh("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=repo)
    return sorted(name for name in set(listed.split("\0")) if name.startswith(PROJECT) and (repo / name).is_file())


def compose(root: Path) -> Path:
    """root/params.yaml written as the composition of root/conf/ (what `csra params` and `dvc exp run` write)."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(root / "params.yaml", str(root / "conf"), None, "config", str(root), [])
    return root / "params.yaml"


def new_project(repo: Path, root: Path, shape_conf: Callable[[Path], None] | None = None) -> Path:
    """A scratch git repository at root holding repo's pipeline, its conf/ first changed by shape_conf, and
    params.yaml its composition."""
    for name in source_files(repo):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, root / name)
    if shape_conf is not None:
        shape_conf(root / "conf")
    compose(root)
    sh("git", "init", "-q", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "init", cwd=root)
    return root
