"""Which pipeline execution a stage runs in — the `dvc repro` / `dvc exp run` process above it, or the command
itself when run by hand — with its DVC experiment and git commit: what names the MLflow runs (each name unique in
its experiment) and keeps them apart."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

PROC = Path("/proc")
# The execution a run belongs to: its key groups the runs of one (host:pid:start ticks, under MLflow's system
# prefix, which the UI leaves out of a run's tags), and a line a reader understands says which.
EXECUTION, EXECUTION_SHOWN = "mlflow.csra.execution", "execution"


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


def _started(ticks: str) -> str:
    """A process's start, from its clock ticks since boot, as local time to the second (for a reader only)."""
    try:
        boot = next(int(line.split()[1]) for line in (PROC / "stat").read_text().splitlines()
                    if line.startswith("btime "))
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(boot + int(ticks) / os.sysconf("SC_CLK_TCK")))
    except (OSError, StopIteration, ValueError):
        return "at an unknown time"


@dataclass(frozen=True)
class Execution:
    """A pipeline execution: key (host:pid:start ticks) keeps executions apart and groups the runs of one;
    described says the same to a reader: the command, the process and when it started."""

    key: str
    described: str


def execution() -> Execution:
    """The nearest `dvc` process above this one (the `dvc repro`, or the `dvc exp exec-run` of one queued
    experiment), else this process: every stage of one execution gets the same key, two executions never do."""
    pid, own = os.getpid(), None
    while pid > 1:
        info = _process(pid)
        if info is None:
            break
        parent, start, argv = info
        own = own or (pid, start, argv)
        if pid != os.getpid() and _is_dvc(argv):
            return _described(pid, start, argv)
        pid = parent
    if own is None:
        return Execution(f"{socket.gethostname()}:{os.getpid()}", f"pid {os.getpid()} on {socket.gethostname()}")
    return _described(*own)


def _described(pid: int, start: str, argv: list[str]) -> Execution:
    host = socket.gethostname()
    return Execution(f"{host}:{pid}:{start}", f"{_command(argv)} (pid {pid} on {host}, started {_started(start)})")


def _command(argv: list[str]) -> str:
    """`dvc repro`, `dvc exp run`, `csra evaluate`: the program and its subcommand, without options."""
    names = [Path(a).name for a in argv]
    for program, marks in (("dvc", ("dvc",)), ("csra", ("csra", "stages.cli"))):
        at = next((i for i, name in enumerate(names[:3]) if name in marks), None)
        if at is not None:
            words = [a for a in argv[at + 1:] if not a.startswith("-")]
            return " ".join([program, *words[:2 if words[:1] in (["exp"], ["queue"]) else 1]])
    return names[0] if names else "a process"


def execution_id() -> str:
    """The key of this stage's execution (see execution)."""
    return execution().key


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_changes() -> list[str]:
    """The tracked files that differ from the commit checked out, dvc.lock aside (DVC rewrites it as the stages
    end: it records what ran, it does not change what runs); none outside a git repository."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    paths = [line[3:].split(" -> ")[-1] for line in out.stdout.splitlines()] if out.returncode == 0 else []
    return [p for p in paths if Path(p).name != "dvc.lock"]


def experiment_ref(baseline: str, name: str) -> str:
    """The git ref DVC gives an experiment once it has run (`refs/exps/<2>/<rest of the baseline>/<name>`)."""
    return f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"


UNCOMMITTED = "git.uncommitted"  # on a run outside a DVC experiment: the tracked files that differ from its commit


def run_tags() -> dict[str, str]:
    """The git commit and, under `dvc exp run`, the experiment's name, baseline and ref; else, when tracked files
    differ from the commit, which (UNCOMMITTED). The commit is the one checked out while the stages run: for an
    experiment that is its baseline (its params applied on top), since DVC commits the experiment itself, under
    the ref, only after the last stage has ended."""
    tags = {}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    for env, tag in (("DVC_EXP_NAME", "dvc.exp_name"), ("DVC_EXP_BASELINE_REV", "dvc.baseline_rev")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    if "dvc.exp_name" in tags and "dvc.baseline_rev" in tags:
        tags["dvc.exp_ref"] = experiment_ref(tags["dvc.baseline_rev"], tags["dvc.exp_name"])
    elif commit and (changed := git_changes()):
        tags[UNCOMMITTED] = ", ".join(changed[:20]) + (f" and {len(changed) - 20} more" if len(changed) > 20 else "")
    return tags


def run_name(*subject: str | None) -> str:
    """What the run is — subject: its dataset, recipe, backbone (None and repeats left out) — then which code: the
    DVC experiment's name, else the short commit, marked -dirty when tracked files differ from it (the commit
    alone does not hold what ran). runs.py makes it unique in its experiment."""
    words = list(dict.fromkeys(word for word in subject if word))
    commit = git_commit()
    if os.environ.get("DVC_EXP_NAME"):
        words.append(os.environ["DVC_EXP_NAME"])
    elif commit:
        words.append(commit[:7] + ("-dirty" if git_changes() else ""))
    return "-".join(words) or "run"


def unique_name(mlflow: ModuleType, experiment_id: str, name: str) -> str:
    """name, else name-2, name-3, …: the first that no run of the experiment has (a retry after a failed run, the
    same commit trained again), so that no two runs read alike."""
    prefix = name.split("'")[0]  # LIKE's wildcards only widen the search; the names are compared exactly here
    taken = {run.info.run_name for run in mlflow.search_runs(
        [experiment_id], filter_string=f"attributes.run_name LIKE '{prefix}%'", output_format="list")}
    return next(candidate for n in range(1, len(taken) + 2)
                if (candidate := name if n == 1 else f"{name}-{n}") not in taken)


def execution_tags(key: str) -> dict[str, str]:
    """The tags that say which execution (of key: execution_id) a run belongs to: EXECUTION, EXECUTION_SHOWN."""
    return {EXECUTION: key, EXECUTION_SHOWN: execution().described}
