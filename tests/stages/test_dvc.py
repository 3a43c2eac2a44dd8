"""The DVC pipeline itself, in a scratch git repository: repro, no-op repro, an experiment with -S, plots."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY, merge

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


def sh(*args, cwd):
    env = {**os.environ, **GIT_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "tmp")
    for name in ("csra", "stages", ".dvc"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    params = merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "init", "-q", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "init", cwd=root)
    return root


def dvc(*args, cwd):
    return sh(sys.executable, "-m", "dvc", *args, cwd=cwd)


def test_repro_noop_and_experiment(project):
    first = dvc("repro", cwd=project)
    for stage in ("prepare", "train", "evaluate", "demo", "export"):
        assert f"Running stage '{stage}'" in first
    assert json.loads((project / "results/evaluate/metrics.json").read_text())["mAP"] >= 0
    assert (project / "results/demo/predictions.json").is_file()
    assert len(list((project / "results/demo/heatmaps").glob("demo_*.png"))) == 3
    assert {p.name for p in (project / "results/export").iterdir()} == {
        "model.pt2", "export.json", "mlflow_model.json"}

    again = dvc("repro", cwd=project)
    assert "Running stage" not in again

    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", "pipeline outputs", cwd=project)
    # a new λ re-runs train, not prepare (a dry run; the stages after train depend on its best.pt)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["lam"] = 0.3
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dry = dvc("repro", "--dry", cwd=project)
    assert "Running stage 'train'" in dry and "Running stage 'prepare'" not in dry
    sh("git", "checkout", "params.yaml", cwd=project)

    exp = dvc("exp", "run", "-S", "evaluate.threshold=0.3", cwd=project)
    assert "Running stage 'evaluate'" in exp and "Running stage 'train'" not in exp
    shown = json.loads(dvc("exp", "show", "--json", cwd=project))
    experiments = [e for row in shown for e in (row.get("experiments") or [])]
    assert any(
        run["revs"][0]["data"]["params"]["params.yaml"]["data"]["evaluate"]["threshold"] == 0.3
        and "OF1" in run["revs"][0]["data"]["metrics"]["results/evaluate/metrics.json"]["data"]
        for run in experiments
    )
    dvc("plots", "show", "-o", "plots", cwd=project)
    assert (project / "plots" / "index.html").is_file()
