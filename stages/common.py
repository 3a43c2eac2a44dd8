"""Shared by the stage commands, light enough for the CLI to import: the user-error wrapper (with what SIGTERM and
SIGINT do), the library's warnings on stderr, the model a stage after train reads (ModelSource), and the machine's
facts for `num_workers: auto`."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from csra.errors import CSRAError

DEFAULT_PARAMS_PATH = Path("params.yaml")  # the params file the stages and load_params read by default
BEST = "best.pt"  # the checkpoint train makes and evaluate, demo and export read


@dataclass(frozen=True)
class ModelSource:
    """The model a stage after train reads, as the command line named it: a checkpoint (None: train.out_dir/best.pt)
    — ours, or an official state dict described by the model options — or a registered model (model_uri).
    dataset_given: the user named the dataset, so our checkpoint's class names must be its names."""

    checkpoint: Path | None = None
    model_uri: str | None = None
    dataset_given: bool = False
    backbone: str | None = None
    num_heads: int | None = None
    lam: float | None = None
    img_size: int | None = None

    def checked(self) -> ModelSource:
        """self; a registered model carries its own model and preprocessing, so it takes no checkpoint and no model
        option (a CSRAError naming them)."""
        if self.model_uri is None:
            return self
        given = {"--checkpoint": self.checkpoint, "--dataset": self.dataset_given or None, "--model": self.backbone,
                 "--num-heads": self.num_heads, "--lam": self.lam, "--img-size": self.img_size}
        named = [option for option, value in given.items() if value is not None]
        if named:
            raise CSRAError(f"--model-uri {self.model_uri}: a registered model takes no {', '.join(named)}")
        return self

    def checkpoint_or(self, out_dir: str) -> Path:
        """The checkpoint to read: the one named, else the one train wrote in out_dir."""
        return self.checkpoint or Path(out_dir) / BEST


def machine() -> tuple[int, int]:
    """(cores, local processes): the CPU cores this process may run on (its affinity mask, as taskset, cgroups or a
    job scheduler set it; the machine's count where the system has no mask) and the training processes torchrun
    starts on this machine (LOCAL_WORLD_SIZE, 1 without torchrun), which share them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores, int(os.environ.get("LOCAL_WORLD_SIZE", 1))


class _Stderr(logging.Handler):
    """Writes each record's message to the current sys.stderr (which a test runner may have replaced)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def show_library_warnings() -> None:
    """The library reports through the 'csra' logger ('warning: …' lines); print them on stderr, once."""
    logger = logging.getLogger("csra")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr())
        logger.setLevel(logging.INFO)
        logger.propagate = False


def one_line(error: CSRAError) -> str:
    """The error's message; one re-raised from a DataLoader worker carries the worker's traceback before it."""
    text = str(error).strip()
    if "Original Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    prefix = f"{CSRAError.__module__}.{CSRAError.__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else last


SIGNAL_WAIT = 10  # s a stage that a signal stops waits for the tracking store to take its last records
_SIGNALLED: list[int] = []  # the signals this process has received (stop_on_signals)
_MAIN_PID = os.getpid()


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT reached the command: raised in its main thread, so that every stage unwinds as from
    Ctrl-C — outputs swapped in only when complete, its MLflow run ended KILLED, a training's state kept."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum: int, frame: object) -> None:
    """The first signal raises Interrupted; a second one exits at once. In a forked process (a DataLoader or search
    worker) it is a KeyboardInterrupt, which ends PyTorch's loader workers quietly and an Optuna trial as failed."""
    if os.getpid() != _MAIN_PID:
        raise KeyboardInterrupt
    if _SIGNALLED:
        os._exit(128 + signum)
    _SIGNALLED.append(signum)
    raise Interrupted(signum)


def stop_on_signals() -> None:
    """SIGTERM (SLURM's preemption, `kill`, a stopped `dvc exp run`) and SIGINT (Ctrl-C) stop the command cleanly
    (Interrupted); only the main thread of the command's process can install them."""
    global _MAIN_PID
    if threading.current_thread() is threading.main_thread():
        _MAIN_PID = os.getpid()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _on_signal)


def stopping(error: BaseException | None = None) -> bool:
    """True when a signal is stopping this process: one was received (the error on its way up may be a consequence
    of it, e.g. a loader worker the same signal ended) or the error is a KeyboardInterrupt."""
    return bool(_SIGNALLED) or isinstance(error, KeyboardInterrupt)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a CSRAError into one 'error: …' line on stderr and exit status 1, no traceback; a stop by SIGTERM or
    SIGINT into one 'stopped by …' line and exit status 128 + the signal's number (143, 130)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        show_library_warnings()
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, SystemExit):
            raise
        except BaseException as e:
            if stopping(e):
                signum = _SIGNALLED[0] if _SIGNALLED else signal.SIGINT
                typer.echo(f"stopped by {signal.Signals(signum).name}", err=True)
                raise typer.Exit(128 + signum) from None
            if isinstance(e, CSRAError):
                typer.echo(f"error: {one_line(e)}", err=True)
                raise typer.Exit(1) from None
            raise

    return wrapper


def head_summary(head: str, num_heads: int, lam: float) -> str:
    """A classifier in a few words, as run and version descriptions say it: the GAP baseline, or the CSRA heads."""
    return "the GAP baseline" if head == "gap" else f"{num_heads} CSRA head{'s' if num_heads > 1 else ''}, λ {lam}"
