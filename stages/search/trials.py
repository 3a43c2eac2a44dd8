"""A search's workers and their trials: this process and forked ones claim the invocation's trials, and each trial
trains as `csra train` does (train.train_recorded) in its own MLflow run nested under the study's."""

from __future__ import annotations

import multiprocessing
import os
import socket
import tempfile
import traceback
from dataclasses import dataclass
from functools import partial
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from pathlib import Path

import optuna
import torch
import typer
from optuna.storages import BaseStorage

from csra.data.prepared import SkippedImage
from csra.distributed import SINGLE
from csra.errors import CSRAError
from csra.train.run import EpochRow
from stages import train as train_stage
from stages.common import machine, one_line, show_library_warnings
from stages.params import load_params
from stages.search.records import STATE, mark_failed, shown_values, trial_name, trial_started, update_parent
from stages.search.space import Space
from stages.search.storage import GRACE, open_storage
from stages.tracking import runs
from stages.tracking.runs import Recorder

STOP_WAIT = 30  # s an invocation that stops early waits for its forked workers to end their trials


@dataclass(frozen=True)
class Search:
    """What every worker of this invocation needs (it crosses to spawned processes)."""

    study: str
    storage: str
    space: Space
    params_file: Path
    parent_run_id: str
    jobs: int
    grace: int = GRACE  # seconds of a worker's silence before its trial counts as dead (a database storage)


class TrialRecord(train_stage.Record):
    """train's records for a trial (no kept checkpoint), and after each epoch the pruner's word on its val mAP."""

    def __init__(self, trial: optuna.Trial, work: Path, epochs: int, recorder: Recorder, about: str,
                 skipped: tuple[SkippedImage, ...] = ()):
        super().__init__(work, None, epochs, recorder, label=f"trial {trial.number}: ", skipped=skipped, about=about)
        self.trial = trial

    def on_epoch(self, row: EpochRow, history: list[EpochRow]) -> None:
        self.trial.report(row["val_mAP"], row["epoch"])  # first: the storage's writes are done before the echo
        condemned = self.trial.should_prune()
        super().on_epoch(row, history)
        if condemned:
            typer.echo(f"{self.label}pruned at the end of epoch {row['epoch']} (val mAP {row['val_mAP']:.2f})")
            raise optuna.TrialPruned(f"pruned at epoch {row['epoch']}")


def objective(search: Search, index: int, current: SynchronizedArray, trial: optuna.Trial) -> float:
    """One trial: train's params with the trial's values, trained as `csra train` trains, in its own MLflow run
    nested under the study's; its best validation mAP."""
    current[index] = trial.number
    trial_started(search.parent_run_id, trial.study)
    host = socket.gethostname()
    for key, value in (("host", host), ("pid", os.getpid()), ("threads", torch.get_num_threads())):
        trial.set_user_attr(key, value)  # threads: what the DVC experiment runs with to give the same numbers
    values = search.space.suggest(trial)
    try:
        params = load_params(train_stage.Params, search.params_file, values)
    except CSRAError as e:  # a combination the settings refuse (each value alone was checked)
        typer.echo(f"trial {trial.number} failed: {one_line(e)}", err=True)
        raise
    typer.echo(f"trial {trial.number} (pid {os.getpid()} on {host}): " + shown_values(values, "="))
    tags = {"mlflow.parentRunId": search.parent_run_id, "optuna.study": search.study,
            "optuna.trial": str(trial.number)}
    with tempfile.TemporaryDirectory(prefix=f"csra-trial-{trial.number}-") as folder, \
            runs.training_run(params.tracking.experiment, params.flat(), trial_name(search.study, trial.number, values),
                              system_metrics=params.tracking.system_metrics, tags=tags,
                              sync_wait=params.tracking.sync_wait) as recorder:
        trial.set_user_attr("mlflow_run_id", recorder.run_id)
        recorder.describe("trial", f"{trial.number} of study {search.study}, {shown_values(values, '=')}")
        try:
            result = train_stage.train_recorded(params, train_stage.setup(params, SINGLE, processes=search.jobs),
                                                Path(folder), recorder, partial(TrialRecord, trial))
        except optuna.TrialPruned:
            recorder.tag(STATE, "pruned")
            recorder.end("KILLED")
            raise
        except BaseException as e:
            recorder.tag(STATE, "failed")
            why = one_line(e) if isinstance(e, CSRAError) else f"{type(e).__name__}: {e}"
            typer.echo(f"trial {trial.number} failed: {why}", err=True)
            if not isinstance(e, (CSRAError, KeyboardInterrupt)):
                traceback.print_exc()
            raise
        recorder.tag(STATE, "complete")
    typer.echo(f"trial {trial.number}: best val mAP {result.best_val_mAP:.2f} at epoch {result.best_epoch}")
    return result.best_val_mAP


def _take(remaining: Synchronized) -> bool:
    """Claim one of this invocation's trials; False when none is left."""
    with remaining.get_lock():
        if remaining.value <= 0:
            return False
        remaining.value -= 1
        return True


def work(search: Search, index: int, remaining: Synchronized, current: SynchronizedArray) -> None:
    """A worker: claims trials of this invocation one at a time and runs each as Optuna hands it out, until none
    is left (or a grid is done). A trial that fails is recorded failed and the worker goes on."""
    show_library_warnings()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if search.jobs > 1 and "OMP_NUM_THREADS" not in os.environ:  # the cores are shared among the workers
        torch.set_num_threads(max(1, machine()[0] // search.jobs))
    storage = open_storage(search.storage, search.grace)
    study = optuna.load_study(study_name=search.study, storage=storage, pruner=search.space.make_pruner())
    seed = search.space.sampler.get("seed")
    if search.space.grid() is not None:  # a grid's order comes from its seed: every worker must hold the same one
        seed = 0 if seed is None else int(seed)
    elif seed is not None:  # workers, and invocations that continue a study, must not draw the same points
        seed = int(seed) + 1000 * len(study.trials) + index
    study.sampler = search.space.make_sampler(seed)
    size = search.space.grid_size()
    while _take(remaining):
        if size is not None and len(study.get_trials(deepcopy=False)) >= size:  # one trial per point
            typer.echo(f"the grid of {size} points is done")
            break
        study.optimize(partial(objective, search, index, current), n_trials=1, catch=(Exception,),
                       callbacks=[partial(update_parent, search.parent_run_id)])
        current[index] = -1


def _worker(handover: Queue, index: int, remaining: Synchronized, current: SynchronizedArray) -> None:
    """A forked worker's entry: it waits for the invocation to hand over the study (None: it stopped), then works;
    a user error is its one line and exit status 1."""
    search = handover.get()
    if search is None:
        return
    try:
        work(search, index, remaining, current)
    except CSRAError as e:
        typer.echo(f"error: {one_line(e)}", err=True)
        raise SystemExit(1) from None


class Workers:
    """This invocation's workers: this process and jobs - 1 forked ones (a forked worker starts at once, with what
    this process imported). They are forked before this process connects to MLflow or starts a thread: a database
    connection must not cross a fork. Each opens its own connections."""

    def __init__(self, jobs: int, trials: int, storage: BaseStorage):
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.remaining, self.current = context.Value("i", trials), context.Array("i", [-1] * jobs)
        self.handover = context.Queue()
        self.storage = storage
        engine = getattr(storage, "engine", None)
        if engine is not None:
            engine.dispose()  # the study's connections stay here: each worker opens its own
        self.processes = [context.Process(target=_worker, args=(self.handover, i, self.remaining, self.current),
                                          name=f"csra-search-{i}") for i in range(1, jobs)]
        for process in self.processes:
            process.start()

    def stop(self) -> None:
        """Release the forked workers before any study is handed over: they end without a trial."""
        for _ in self.processes:
            self.handover.put(None)
        for process in self.processes:
            process.join()

    def run(self, search: Search) -> None:
        """Hand the study over, work as worker 0, wait for the others. A forked worker killed by a signal in a trial
        loses that trial (marked failed), and the others go on. When this process stops early (an error, an
        interrupt) it stops the others and waits for them; a trial one leaves running is marked failed: the study
        holds no running trial of this invocation when it ends."""
        for _ in self.processes:
            self.handover.put(search)
        try:
            work(search, 0, self.remaining, self.current)
            for process in self.processes:
                process.join()
        except BaseException:
            for process in self.processes:
                process.terminate()
            for process in self.processes:
                process.join(STOP_WAIT)
                if process.is_alive():
                    process.kill()
                    process.join()
            pids = [os.getpid(), *(process.pid for process in self.processes)]
            for index, pid in enumerate(pids):  # Optuna fails a trial on an interrupt; not on a kill or an exit
                if self.current[index] >= 0 and mark_failed(self.storage, search.study, self.current[index],
                                                            f"worker {index} stopped with its invocation"):
                    typer.echo(f"worker {index} (pid {pid}) stopped in trial {self.current[index]}: marked failed",
                               err=True)
            raise
        for index, process in enumerate(self.processes, start=1):
            if process.exitcode and process.exitcode < 0 and self.current[index] >= 0:
                typer.echo(f"warning: worker {index} (pid {process.pid}) was killed (signal {-process.exitcode}) "
                           f"in trial {self.current[index]}: marked failed; the other workers went on", err=True)
                mark_failed(self.storage, search.study, self.current[index], f"worker {index} died")
