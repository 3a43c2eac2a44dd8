"""Which execution a stage runs in: the `dvc` process above it (every stage of one `dvc repro` shares its id), or
the command itself when run by hand (two commands, two executions)."""

import os
import subprocess
import sys

import pytest
from helpers import REPO

from stages.execution import _is_dvc

SAY_ID = "from stages.execution import execution_id; print(execution_id())"


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
