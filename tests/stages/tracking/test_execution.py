"""Which execution a stage runs in: the `dvc` process above it (every stage of one `dvc repro` shares its id), or
the command itself when run by hand (two commands, two executions), said in words too; and the run's name: what
it is, then its DVC experiment, else its commit, marked dirty when tracked files differ from it."""

import os
import subprocess
import sys

import pytest
from helpers import REPO

from stages.tracking.execution import UNCOMMITTED, _command, _is_dvc, run_name, run_tags

SAY_ID = "from stages.tracking.execution import execution_id; print(execution_id())"


def ids(command, tmp_path, *path):
    """The execution ids printed by the stages command starts, with path first on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, path), str(REPO)])}
    out = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    return out.split()


# A `dvc` that runs two stages one after the other, as `dvc repro` does.
FAKE_DVC = f"import subprocess, sys\nfor _ in range(2):\n    subprocess.run([sys.executable, '-c', {SAY_ID!r}])\n"


def test_two_commands_run_by_hand_from_one_shell_are_two_executions(tmp_path):
    shell = f"{sys.executable} -c '{SAY_ID}'; {sys.executable} -c '{SAY_ID}'; true"  # both children of the shell
    first, second = ids(["bash", "-c", shell], tmp_path)
    assert first != second


def test_stages_under_one_dvc_repro_share_its_execution(tmp_path):
    script = tmp_path / "bin" / "dvc"
    script.parent.mkdir()
    script.write_text(FAKE_DVC)
    first, second = ids([sys.executable, str(script), "repro"], tmp_path)
    assert first == second
    package = tmp_path / "fake" / "dvc"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_DVC)
    first, second = ids([sys.executable, "-m", "dvc", "repro"], tmp_path, tmp_path / "fake")
    assert first == second


@pytest.mark.parametrize("argv, dvc", [
    (["dvc", "repro"], True),
    (["/venv/bin/dvc", "exp", "run"], True),
    (["python", "/x/bin/dvc", "repro"], True),
    (["/usr/bin/python3", "-m", "dvc", "repro"], True),
    (["python", "-m", "pytest", "dvc"], False),
    (["python", "train.py", "dvc"], False),
    (["bash", "-c", "dvc repro"], False),
])
def test_dvc_is_recognised_however_it_is_started(argv, dvc):
    assert _is_dvc(argv) is dvc


@pytest.mark.parametrize("argv, command", [
    (["/venv/bin/python", "/venv/bin/dvc", "repro"], "dvc repro"),
    (["python", "-m", "dvc", "exp", "run", "-n", "x", "--temp"], "dvc exp run"),
    (["dvc", "exp", "exec-run", "--infofile", "x"], "dvc exp exec-run"),
    (["/venv/bin/python", "/venv/bin/csra", "evaluate", "--threshold", "0.3"], "csra evaluate"),
    (["python", "-m", "stages.cli", "train"], "csra train"),
])
def test_an_execution_is_said_in_words(argv, command):
    assert _command(argv) == command


def test_stages_under_one_dvc_repro_say_which_in_words(tmp_path):
    script = tmp_path / "bin" / "dvc"
    script.parent.mkdir()
    script.write_text(FAKE_DVC.replace("execution_id; print(execution_id())",
                                       "execution; print(execution().described)"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(script), "repro"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert len(out) == 2 and out[0] == out[1] and out[0].startswith("dvc repro (pid "), out


def git(folder, *args):
    subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)


@pytest.fixture
def repository(tmp_path, monkeypatch):
    """A git repository with one commit (params.yaml, dvc.lock), the working folder; its short commit."""
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    monkeypatch.chdir(tmp_path)
    git(tmp_path, "init", "-q")
    (tmp_path / "params.yaml").write_text("lam: 0.1\n")
    (tmp_path / "dvc.lock").write_text("stages: {}\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_a_run_is_named_what_it_is_then_its_commit_marked_dirty_when_the_workspace_differs(repository, tmp_path):
    assert run_name("voc07", "voc07", "resnet101") == f"voc07-resnet101-{repository}"
    assert UNCOMMITTED not in run_tags()
    (tmp_path / "dvc.lock").write_text("stages: {train: {}}\n")  # what DVC rewrites as stages end
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert run_name("synthetic", "synthetic", "resnet18") == f"synthetic-resnet18-{repository}"
    (tmp_path / "params.yaml").write_text("lam: 0.3\n")  # the commit does not hold these params
    assert run_name("voc07", "voc07", "resnet101") == f"voc07-resnet101-{repository}-dirty"
    assert run_tags()[UNCOMMITTED] == "params.yaml"


def test_under_dvc_exp_run_the_experiments_name_stays_in_the_run_name(repository, tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text("lam: 0.3\n")  # DVC applied the experiment's params
    monkeypatch.setenv("DVC_EXP_NAME", "lucky-lion")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0123456789abcdef0123456789abcdef01234567")
    assert run_name("coco", "coco_cutmix", "resnet101") == "coco-coco_cutmix-resnet101-lucky-lion"
    assert UNCOMMITTED not in run_tags()  # the experiment's own commit holds them (dvc.exp_ref)
