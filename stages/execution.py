"""Which pipeline execution a stage runs in — the `dvc repro` / `dvc exp run` process above it, or the command
itself when run by hand — with its DVC experiment and git commit: what names the MLflow runs and keeps them apart."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

PROC = Path("/proc")


def _process(pid: int) -> tuple[int, str, list[str]] | None:
    """(parent pid, start time in clock ticks, argv) of a process, from /proc; None where it cannot be read."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name in parentheses may hold spaces
    return int(fields[1]), fields[19], [a.decode(errors="replace") for a in argv if a]


def _is_dvc(argv: list[str]) -> bool:
    """`dvc …`, `python /path/bin/dvc …` or `python -m dvc …`."""
    head = [Path(a).name for a in argv[:2]]
    return "dvc" in head or argv[1:3] == ["-m", "dvc"]


def execution_id() -> str:
    """host:pid:start of the nearest `dvc` process above this one (the `dvc repro`, or the `dvc exp exec-run` of
    one queued experiment), else of this process: every stage of one execution gets the same id, two executions
    never do."""
    pid, own = os.getpid(), None
    while pid > 1:
        info = _process(pid)
        if info is None:
            break
        parent, start, argv = info
        own = own or f"{pid}:{start}"
        if pid != os.getpid() and _is_dvc(argv):
            return f"{socket.gethostname()}:{pid}:{start}"
        pid = parent
    return f"{socket.gethostname()}:{own or os.getpid()}"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def experiment_ref(baseline: str, name: str) -> str:
    """The git ref DVC gives an experiment once it has run (`refs/exps/<2>/<rest of the baseline>/<name>`)."""
    return f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"


def run_tags() -> dict[str, str]:
    """The git commit and, under `dvc exp run`, the experiment's name, baseline and ref. The commit is the one
    checked out while the stages run: for an experiment that is its baseline (its params applied on top), since
    DVC commits the experiment itself, under the ref, only after the last stage has ended."""
    tags = {}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    for env, tag in (("DVC_EXP_NAME", "dvc.exp_name"), ("DVC_EXP_BASELINE_REV", "dvc.baseline_rev")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    if "dvc.exp_name" in tags and "dvc.baseline_rev" in tags:
        tags["dvc.exp_ref"] = experiment_ref(tags["dvc.baseline_rev"], tags["dvc.exp_name"])
    return tags


def run_name(recipe: str) -> str:
    """The DVC experiment's name, or the recipe and the short commit."""
    commit = git_commit()
    return os.environ.get("DVC_EXP_NAME") or (f"{recipe}-{commit[:7]}" if commit else recipe)
