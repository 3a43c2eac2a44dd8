"""`csra train`: every params key in the MLflow run, a run killed mid-epoch and resumed, the NaN stop, and 2
nodes under torchrun: one run, and one killed and resumed from rank 0's state."""

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml
from helpers import (
    TINY,
    assert_one_line_error,
    edit_params,
    free_port,
    merge,
    new_store,
    ok,
    repo_params,
    run,
    stage_params,
    start,
    stop,
    training_run,
)

from csra.evaluate.metrics import average_precision, mean_average_precision
from csra.evaluate.predict import predict
from csra.model.checkpoints import load_checkpoint_model


def history(path):
    return list(csv.DictReader(path.open()))


def test_every_params_key_reaches_the_mlflow_run_under_its_name(tiny_params, mlflow_store):
    edit_params(tiny_params, **{"train.epochs": 1, "data.raw_path": "raw"})
    ok("prepare")
    code, output = run("train", "--lam", "0.25")  # an option given on the command line is what the run used
    assert code == 0, output
    mlflow.set_tracking_uri(mlflow_store)
    logged = training_run(tiny_params.parent / "results/train/best.pt").data.params
    expected = stage_params("train", tiny_params, {"train.lam": 0.25}).flat()
    assert logged == {key: str(value) for key, value in expected.items()}
    assert logged["train.lam"] == "0.25" and logged["data.selection"] == "val"
    assert {key.split(".")[0] for key in logged} == {"data", "train", "tracking"}  # what train read


def test_skipped_images_are_counted_on_start_each_epoch_and_in_the_run(tiny_params, mlflow_store):
    """data.bad_images: skip: a missing training image is counted in the start line, an undecodable one (met in a
    loader process) after the epoch that met it; the run holds their count and list, no tracked output does."""
    edit_params(tiny_params, **{"train.epochs": 2, "train.num_workers": 1, "data.selection": "test"})
    ok("prepare")
    train_items = json.loads((tiny_params.parent / "data/prepared/trainval_voc07.json").read_text())
    missing, broken = train_items[0]["img_path"], train_items[1]["img_path"]
    os.remove(missing)
    with open(broken, "wb") as f:
        f.write(b"a text file named .jpg")
    output = ok("train")
    assert f"{len(train_items) - 1} train images (1 skipped: missing, see skipped_images.txt in the MLflow run)" \
        in output
    assert "epoch 1: 1 training image(s) unreadable, skipped (2 skipped in all" in output
    assert "epoch 2: 1 training image(s) unreadable" not in output
    mlflow.set_tracking_uri(mlflow_store)
    found = training_run(tiny_params.parent / "results/train/best.pt")
    assert found.data.metrics["skipped_images"] == 2
    listed = mlflow.artifacts.load_text(f"{found.info.artifact_uri}/skipped_images.txt")
    assert listed == f"train\tmissing\t{missing}\ntrain\tunreadable\t{broken}\n"
    assert not list(tiny_params.parent.glob("results/**/skipped_images*"))


# `csra train` as a process of its own, sent SIGTERM by itself 10 images into epoch 3 (20 train + 4 held-out val
# images per epoch): the moment SLURM's preemption or `kill` would pick
SIGTERM_IN_EPOCH_3 = """
import os, signal, sys
import csra.data.loading as d
get, calls = d.MultiLabelDataset.__getitem__, [0]
def item(self, index):
    calls[0] += 1
    if calls[0] == 2 * (20 + 4) + 10:
        os.kill(os.getpid(), signal.SIGTERM)
    return get(self, index)
d.MultiLabelDataset.__getitem__ = item
from stages.cli import main
sys.argv[0] = "csra"
main()
"""


def test_sigterm_mid_epoch_ends_the_run_killed_and_a_resume_ends_like_an_uninterrupted_run(tiny_params,
                                                                                             mlflow_store):
    ok("prepare")
    code, output = run("train", "--epochs", "3", "--out-dir", "straight")
    assert code == 0, output

    killed = subprocess.run([sys.executable, "-c", SIGTERM_IN_EPOCH_3, "train", "--epochs", "3", "--out-dir",
                             "resumed"], capture_output=True, text=True, timeout=300)
    partial = tiny_params.parent / "resumed.partial"
    assert killed.returncode == 143, killed.stderr
    assert killed.stderr.splitlines()[-2:] == [
        "stopped during epoch 3: the state of epoch 2 stays in resumed.partial; `csra train` (train.resume: auto) "
        "continues this run from there", "stopped by SIGTERM"], killed.stderr
    assert "Traceback" not in killed.stderr and (partial / "train_state.pt").is_file()
    assert not (tiny_params.parent / "resumed").exists()  # no output until a run is whole
    run_id = torch.load(partial / "train_state.pt", weights_only=True)["extra"]["run_id"]  # the killed run's
    client = mlflow.tracking.MlflowClient(mlflow_store)
    killed_run = client.get_run(run_id)
    assert killed_run.info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(run_id, "val_mAP")] == [1, 2]  # what it had recorded
    code, output = run("train", "--epochs", "3", "--out-dir", "resumed")  # train.resume: auto
    assert code == 0 and "resuming after epoch 2" in output, output

    root = tiny_params.parent
    for name in ("history.csv", "metrics.json"):
        assert (root / "resumed" / name).read_bytes() == (root / "straight" / name).read_bytes(), name
    resumed, straight = (load_checkpoint_model(root / name / "best.pt")[1] for name in ("resumed", "straight"))
    assert resumed.pop("params") == {**straight.pop("params"), "train.out_dir": "resumed"}  # the one param changed
    weights = resumed.pop("state_dict"), straight.pop("state_dict")
    assert resumed == straight and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])
    resumed = client.get_run(run_id)  # the killed run, reopened and finished
    assert resumed.info.status == "FINISHED" and resumed.data.tags["checkpoint"] == "resumed/best.pt"
    steps = [m.step for m in client.get_metric_history(run_id, "val_mAP")]
    assert steps == [1, 2, 3]  # its curves go on
    assert not (root / "resumed/train_state.pt").exists() and not partial.exists()
    assert_one_line_error(*run("train", "--out-dir", "resumed", "--resume"), "no interrupted run to resume")


def test_nan_loss_stops_and_keeps_the_last_good_state(tiny_params, monkeypatch):
    from csra.train import loop as trainer

    ok("prepare")
    real = trainer.make_criterion

    def nan_after_epoch_1(cfg):
        criterion, calls = real(cfg), {"n": 0}

        def wrapped(logits, targets):
            calls["n"] += 1
            loss = criterion(logits, targets)
            return loss * float("nan") if calls["n"] > 3 else loss  # 3 steps per epoch: 20 images, batch 8

        return wrapped

    monkeypatch.setattr(trainer, "make_criterion", nan_after_epoch_1)
    code, output = run("train")
    assert_one_line_error(code, output, "training loss is nan at epoch 2, step 0",
                          "the last good state (epoch 1) stays in results/train.partial/train_state.pt")
    state = torch.load(tiny_params.parent / "results/train.partial/train_state.pt", weights_only=True)
    assert state["epoch"] == 1 and not (tiny_params.parent / "results/train").exists()
    # the NaN is read at the epoch's end, after steps with NaN gradients: none of them reached the files
    best, _ = load_checkpoint_model(tiny_params.parent / "results/train.partial/best.pt")
    for name, value in best.state_dict().items():
        assert torch.isfinite(value.float()).all() and torch.equal(value, state["model"][name]), name


@pytest.fixture
def kernels():
    """Puts back torch's kernel flags that a run sets."""
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.get_float32_matmul_precision()
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
    torch.set_float32_matmul_precision(saved[2])


def test_auto_workers_come_from_this_machine_and_a_set_value_wins(tiny_params, monkeypatch, kernels):
    from csra.data import loading

    ok("prepare")
    seen = []
    monkeypatch.setattr(loading, "auto_workers", lambda *facts: seen.append(facts) or 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    edit_params(tiny_params, **{"train.num_workers": "auto", "train.epochs": 1, "train.deterministic": True,
                                "evaluate.num_workers": "auto"})
    code, output = run("train")
    assert code == 0 and seen == [(6, 2, "cpu")] and "1 loader workers" in output, output
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert run("evaluate")[0] == 0 and seen[1:] == [(6, 2, "cpu")]
    assert torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == "high"  # evaluate's: fast

    edit_params(tiny_params, **{"train.num_workers": 0, "evaluate.num_workers": 0})
    code, output = run("train", "--out-dir", "again")
    assert code == 0 and "0 loader workers" in output and run("evaluate")[0] == 0 and len(seen) == 2


NODE_TIMEOUT_S = 240  # a hung rendezvous or collective fails the test instead of hanging it


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def node_folder(source, folder):
    """A node's own folder: a copy of source's params.yaml and prepared data (the same relative paths, as `dvc pull`
    gives), as on a machine that shares no disk with the others."""
    folder.mkdir()
    shutil.copy(source / "params.yaml", folder / "params.yaml")
    shutil.copytree(source / "data/prepared", folder / "data/prepared")
    return folder


def launch(folders, logs, store):
    """Two torchrun launchers of `csra train`, one per "node" folder (c10d rendezvous on node 0, gloo, one process
    each), as on two machines, tracking to store; node r's output in logs/node{r}.log."""
    port, run_id = free_port(), f"two-node-{os.getpid()}-{time.monotonic_ns()}"
    nodes = []
    for rank, folder in enumerate(folders):
        # c10d ignores --node-rank: it numbers the nodes in the sorted order of their addresses (then process ids),
        # so node 0 gets rank 0 as 127.0.0.1 and node 1 rank 1 as 127.0.0.2 (both loopback on Linux)
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                   "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", run_id,
                   "--rdzv-conf", "join_timeout=120", "--local-addr", f"127.0.0.{rank + 1}",
                   "-m", "stages.cli", "train"]
        nodes.append(start(command, logs / f"node{rank}.log", cwd=folder, OMP_NUM_THREADS="1",
                           MLFLOW_TRACKING_URI=store))
    return nodes


def finish(nodes, logs):
    """The nodes' exit codes (None if they ran past NODE_TIMEOUT_S) and outputs, once they ended."""
    deadline = time.monotonic() + NODE_TIMEOUT_S
    try:
        codes = [node.wait(timeout=max(deadline - time.monotonic(), 1)) for node in nodes]
    except subprocess.TimeoutExpired:
        codes = None
    finally:
        for node in nodes:
            stop(node)
    return codes, [(logs / f"node{rank}.log").read_text() for rank in range(len(nodes))]


def report(codes, outputs):
    return f"exit codes {codes}\n" + "".join(f"node {rank}:\n{out}\n" for rank, out in enumerate(outputs))


@dataclass(frozen=True)
class TwoNodes:
    """An uninterrupted two-node training run (two_nodes)."""

    node0: Path  # params.yaml, data/prepared, and the run's outputs (rank 0's node)
    node1: Path  # params.yaml and data/prepared
    node1_before: list[str]  # what node1 held before the run
    codes: list[int] | None
    outputs: list[str]  # what each node printed
    store: str  # the run's MLflow store


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, mlflow_template):
    """This file's one uninterrupted two-node run of `csra train` over loopback (launch) on the tiny params, each node
    in its own folder with its own copy of the params and the prepared data (no shared disk), one MLflow store."""
    root = tmp_path_factory.mktemp("two-nodes")
    store = new_store(root, mlflow_template)
    node0 = root / "node0"
    node0.mkdir()
    (node0 / "params.yaml").write_text(yaml.safe_dump(merge(repo_params(), TINY)))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(node0)
        patch.setenv("MLFLOW_TRACKING_URI", store)
        ok("prepare")
    node1 = node_folder(node0, root / "node1")
    before, logs = files_under(node1), tmp_path_factory.mktemp("node-logs")
    codes, outputs = finish(launch((node0, node1), logs, store), logs)
    return TwoNodes(node0, node1, before, codes, outputs, store)


def test_two_nodes_over_loopback_one_run_one_set_of_outputs(two_nodes, monkeypatch):
    """Two torchrun launchers, one per "node", as on two machines (two_nodes). Rank 0 (node 0) writes the outputs and
    the run; node 1 trains its share and writes nothing."""
    node0, node1, (out0, out1) = two_nodes.node0, two_nodes.node1, two_nodes.outputs
    assert two_nodes.codes == [0, 0], report(two_nodes.codes, two_nodes.outputs)
    assert out0.count("× 2 processes") == 1 and out0.count("epoch   2/2") == 1, out0
    assert "× 2 processes" not in out1 and "epoch " not in out1, out1  # rank 1 prints no run
    assert files_under(node1) == two_nodes.node1_before  # no outputs, no partial folder, no MLflow files on node 1

    mlflow.set_tracking_uri(two_nodes.store)
    runs = mlflow.search_runs(experiment_names=["csra"])
    assert len(runs) == 1 and runs["status"].iloc[0] == "FINISHED"
    steps = mlflow.tracking.MlflowClient().get_metric_history(runs["run_id"].iloc[0], "val_mAP")
    assert sorted(m.step for m in steps) == [1, 2]
    root = node0 / "results/train"
    assert sorted(p.name for p in root.iterdir()) == ["best.pt", "history.csv", "metrics.json"]
    assert not (node0 / "results/train.partial").exists()
    # the validation mAP logged for the best epoch is the best.pt model's mAP on the whole validation set
    model, saved = load_checkpoint_model(root / "best.pt")
    monkeypatch.chdir(node0)  # the prepared items' image paths are relative to it
    items = json.loads((node0 / "data/prepared/val_voc07.json").read_text())  # the held-out split
    scores, targets, _ = predict(model, items, model.config, 16, 0, torch.device("cpu"))
    expected = 100 * mean_average_precision(average_precision(scores, targets, "voc07"))
    best = history(root / "history.csv")[saved["epoch"] - 1]
    assert float(best["val_mAP"]) == pytest.approx(expected, abs=1e-4)
    assert np.isclose(runs["metrics.best_val_mAP"].iloc[0], expected, atol=1e-4)


def test_two_nodes_killed_after_an_epoch_both_resume_from_rank_0s_state(two_nodes, tmp_path, mlflow_store):
    """Both nodes killed (SIGTERM to each torchrun) once rank 0 saved epoch 1, ending within seconds, then the same
    commands again (train.resume: auto): only rank 0's node holds the state, and every rank resumes from it, after
    epoch 1, ending with the uninterrupted run's (two_nodes) best.pt, history and metrics."""
    assert two_nodes.codes == [0, 0], report(two_nodes.codes, two_nodes.outputs)
    node0, node1 = (node_folder(two_nodes.node0, tmp_path / f"node{rank}") for rank in (0, 1))
    before = files_under(node1)
    state, outputs = node0 / "results/train.partial/train_state.pt", node0 / "results/train"
    logs = tmp_path  # node{r}.log: the killed run's output, then the resumed run's
    killed = launch((node0, node1), logs, mlflow_store)
    try:
        deadline = time.monotonic() + NODE_TIMEOUT_S
        while not state.is_file() and time.monotonic() < deadline and all(n.poll() is None for n in killed):
            time.sleep(0.05)
    finally:
        for node in killed:  # as a scheduler stops a job: every node at once
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGTERM)
    signalled = time.monotonic()
    _, said = finish(killed, logs)  # they end, of the signal or exiting on it: either will do
    # promptly: a rank that stops leaves the process group without a barrier, which the other rank (inside DDP's
    # collective) would never reach; torchrun's agents would SIGKILL both after 30 s
    assert time.monotonic() - signalled < 15, report(None, said)
    # killed during epoch 2 (not after the run ended, which would test nothing), and the state stays
    assert state.is_file() and not outputs.exists(), report(None, said)
    assert torch.load(state, weights_only=True)["epoch"] == 1, report(None, said)

    codes, (out0, out1) = finish(launch((node0, node1), logs, mlflow_store), logs)
    assert codes == [0, 0], report(codes, [out0, out1])
    assert "resuming after epoch 1" in out0 and "epoch   1/2" not in out0 and "epoch   2/2" in out0, out0
    assert "rank 1: resuming after epoch 1" in out1, out1  # node 1 holds no state: rank 0's reached it
    assert files_under(node1) == before  # node 1 wrote nothing, killed or resumed
    straight = two_nodes.node0 / "results/train"
    for name in ("best.pt", "history.csv", "metrics.json"):  # the same bytes (on CPU), weights and all
        assert (outputs / name).read_bytes() == (straight / name).read_bytes(), name
    mlflow.set_tracking_uri(mlflow_store)
    runs = mlflow.search_runs(experiment_names=["csra"])  # the killed run, reopened and finished
    assert len(runs) == 1 and runs["status"].iloc[0] == "FINISHED"
