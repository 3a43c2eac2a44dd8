"""Records users can trust: a stage's outputs appear whole or not at all (a kill, a full disk, a read-only folder
leave the previous output exactly as it was, and the next run removes the leftovers); the best epoch is selected on
images held out of both training and test, and evaluate says so when it reports on the selection images.
Each test works in its own copy of conftest's tiny trained workspace (`workspace`)."""

import hashlib
import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager

import pytest
import yaml
from helpers import assert_one_line_error, run, training_run

from csra.model.checkpoints import load_checkpoint_model


def snapshot(folder):
    """Every file under folder with the hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.endswith(".tmp"))


def killed_midway(workspace, stage, signum):
    """`csra stage` in a process of its own that sends itself signum midway, its MLflow run open: evaluate once
    its files are written and its metrics logged; export once its files are written, as its run starts."""
    module, function = {"evaluate": ("stages.evaluate", "record_test_data"),
                        "export": ("stages.tracking.registry", "evaluation")}[stage]
    code = (f"import os, sys; import {module} as m; "
            f"m.{function} = lambda *a, **k: os.kill(os.getpid(), {int(signum)}); "
            "from stages.cli import main; sys.argv[0] = 'csra'; main()")
    return subprocess.run([sys.executable, "-c", code, stage], cwd=workspace, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, timeout=300)


def killed_runs():
    import mlflow

    return mlflow.search_runs(search_all_experiments=True, filter_string="attributes.status = 'KILLED'",
                              output_format="list")


def test_a_killed_evaluate_leaves_the_previous_output_exactly(workspace):
    before = snapshot(workspace / "results/evaluate")
    killed = killed_midway(workspace, "evaluate", signal.SIGKILL)  # no chance to clean up
    assert killed.returncode == -9
    assert snapshot(workspace / "results/evaluate") == before
    assert len(leftovers(workspace / "results")) == 1  # the killed writer's temp folder
    # SIGTERM (SLURM's preemption, `kill`, a stopped `dvc exp run`): removes that leftover as it starts, then
    # stops cleanly: its run KILLED, its own temp folder gone, the previous output exactly
    stopped = killed_midway(workspace, "evaluate", signal.SIGTERM)
    assert stopped.returncode == 143 and stopped.stderr.splitlines()[-1] == "stopped by SIGTERM", stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert snapshot(workspace / "results/evaluate") == before and leftovers(workspace / "results") == []
    (run_killed,) = killed_runs()
    assert run_killed.data.tags["csra.train_run_id"] == training_run(workspace / "results/train/best.pt").info.run_id
    assert "mAP" in run_killed.data.metrics  # what it had recorded
    assert run("evaluate")[0] == 0  # the next run replaces the output whole
    assert leftovers(workspace / "results") == [] and set(snapshot(workspace / "results/evaluate")) == set(before)


def test_a_sigterm_during_export_ends_its_run_killed_and_writes_no_output(workspace):
    stopped = killed_midway(workspace, "export", signal.SIGTERM)
    assert stopped.returncode == 143 and stopped.stderr.splitlines()[-1] == "stopped by SIGTERM", stopped.stderr
    assert not (workspace / "results/export").exists() and leftovers(workspace / "results") == []
    (run_killed,) = killed_runs()
    assert run_killed.data.tags["csra.train_run_id"] == training_run(workspace / "results/train/best.pt").info.run_id


@contextmanager
def mounted(path, options):
    """A tmpfs at path (root only: the test is skipped where mounting is not allowed)."""
    path.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_full_disk_during_evaluate_leaves_the_previous_output_exactly(workspace, tmp_path):
    with mounted(tmp_path / "disk", "size=400k") as disk:
        assert run("evaluate", "--out-dir", str(disk / "eval"))[0] == 0
        before = snapshot(disk / "eval")
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 16 * 1024))  # room for the scores, not for the plots
        code, output = run("evaluate", "--threshold", "0.3", "--out-dir", str(disk / "eval"))
        assert_one_line_error(code, output, f"no space left on device: {disk / 'eval'}")
        assert snapshot(disk / "eval") == before and leftovers(disk) == []


def test_read_only_output_folders_are_one_line(workspace, tmp_path):
    with mounted(tmp_path / "ro", "ro,size=64k") as read_only:
        assert_one_line_error(*run("evaluate", "--out-dir", str(read_only / "eval")),
                              f"read-only file system: {read_only / 'eval'}")
        assert_one_line_error(*run("train", "--out-dir", str(read_only / "train")),
                              f"read-only file system: {read_only / 'train.partial'}")


def items_of(path):
    return {item["img_path"] for item in json.loads(path.read_text())}


def test_the_best_epoch_is_selected_on_images_held_out_of_training_and_test(workspace):
    prepared = workspace / "data/prepared"
    train, val, test = (items_of(prepared / name) for name in
                        ("trainval_voc07.json", "val_voc07.json", "test_voc07.json"))
    selection = load_checkpoint_model(workspace / "results/train/best.pt")[1]["selection"]
    assert selection["split"] == "val" and selection["source"] == "val_voc07.json"
    assert selection["items"] == len(val) > 0 and val < train and not val & test
    tags = training_run(workspace / "results/train/best.pt").data.tags
    assert tags["selection"] == "val: val_voc07.json" and tags["evaluated_on_selection_images"] == "false"


def test_evaluate_says_when_it_reports_on_the_selection_images(workspace):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["data"]["selection"] = "test"  # the official protocol
    (workspace / "official.yaml").write_text(yaml.safe_dump(params))
    code, output = run("train", "--out-dir", "results/official", "--epochs", "1", "--params", "official.yaml")
    assert code == 0, output
    code, output = run("evaluate", "--checkpoint", "results/official/best.pt", "--out-dir", "results/eval_official",
                       "--params", "official.yaml")
    assert code == 0 and "note: results/official/best.pt was selected on these images (test: test_voc07.json)" \
        in output, output
