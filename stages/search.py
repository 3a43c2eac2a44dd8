"""`csra search`: an Optuna study over a space of train's params (stages/search_space.py). Each trial is a training
run of `csra train` — the same setup, `train()`, validation and records — on params.yaml with the trial's values,
scored by its best validation mAP on the held-out selection split; its pruner may stop it at the end of an epoch.

The study lives in Optuna's storage: by default optuna.db (SQLite, git-ignored) at the repository root; with
--storage, any database URL (postgresql://…) or a journal file (a path; on a shared file system for many machines)
that every worker of the study shares, so that a later invocation, on any machine, continues it. Optuna hands each
trial to one worker. In MLflow the study is one parent run and every trial a run nested under it; the best trial
becomes the DVC experiment <study>-best (stages/search_records.py)."""

from __future__ import annotations

import multiprocessing
import os
import socket
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import typer

from csra.data.prepared import SkippedImage
from csra.distributed import SINGLE
from csra.errors import CSRAError, first_line
from csra.settings import LOCAL, with_role
from csra.train.run import TrainPaths
from csra.train.run import train as run_training
from stages import tracking
from stages import train as train_stage
from stages.common import BEST, machine, one_line, show_library_warnings
from stages.params import load_params
from stages.search_records import (
    STATE,
    best_trial,
    mark_failed,
    parent_run,
    promote_best,
    shown,
    shown_values,
    stale_trial,
    summary,
    trial_name,
    update_parent,
)
from stages.search_space import Space, load_space

DEFAULT_STORAGE = "optuna.db"  # the embedded study storage at the repository root (git-ignored)
DEFAULT_SPACE = "paper"
# An RDB storage's workers beat every HEARTBEAT s; a trial whose worker is silent for GRACE s (a machine that died)
# is marked failed by the next worker that starts a trial. A dead worker process is marked at once by its invocation.
HEARTBEAT, GRACE = 20, 90


@dataclass(frozen=True)
class Search:
    """What every worker of this invocation needs (it crosses to spawned processes)."""

    study: str
    storage: str
    space: Space
    params_file: Path
    parent_run_id: str
    jobs: int


def open_storage(url: str) -> Any:
    """Optuna's storage for url: a database URL (with heartbeats), else a journal file at that path."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the heartbeat's
    try:
        if "://" not in url:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(url))
        engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT,
                                          grace_period=GRACE, heartbeat_stale_trial_callback=stale_trial)
    except ImportError as e:
        raise CSRAError(f"--storage {shown(url)}: {e} (a PostgreSQL storage needs psycopg2: "
                        "pip install psycopg2-binary)") from None
    except Exception as e:  # a database that cannot be reached or read
        raise CSRAError(f"--storage {shown(url)}: {first_line(e)}") from None


def open_study(name: str, storage: Any, space: Space) -> tuple[Any, bool]:
    """(the study, whether this call created it): creating is atomic in the storage, so of several invocations
    that start a new study together exactly one creates it (and its MLflow parent run)."""
    import optuna

    try:
        return optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                   sampler=space.make_sampler(None), pruner=space.make_pruner()), True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=storage, sampler=space.make_sampler(None),
                                 pruner=space.make_pruner()), False


class TrialRecord(train_stage.Record):
    """train's records for a trial (no kept checkpoint), and after each epoch the pruner's word on its val mAP."""

    def __init__(self, trial: Any, work: Path, epochs: int, recorder: tracking.Recorder, about: str,
                 skipped: tuple[SkippedImage, ...] = ()):
        super().__init__(work, None, epochs, recorder, label=f"trial {trial.number}: ", skipped=skipped, about=about)
        self.trial = trial

    def on_epoch(self, row: Any, history: list) -> None:
        self.trial.report(row["val_mAP"], row["epoch"])  # first: the storage's writes are done before the echo
        condemned = self.trial.should_prune()
        super().on_epoch(row, history)
        if condemned:
            import optuna

            typer.echo(f"{self.label}pruned at the end of epoch {row['epoch']} (val mAP {row['val_mAP']:.2f})")
            raise optuna.TrialPruned(f"pruned at epoch {row['epoch']}")


def objective(search: Search, index: int, current: Any, trial: Any) -> float:
    """One trial: train's params with the trial's values, trained as `csra train` trains, in its own MLflow run
    nested under the study's; its best validation mAP."""
    import optuna
    import torch

    current[index] = trial.number
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
            tracking.training_run(params.tracking.experiment, params.flat(), trial_name(search.study, trial.number,
                                                                                       values),
                                  system_metrics=params.tracking.system_metrics, tags=tags) as recorder:
        trial.set_user_attr("mlflow_run_id", recorder.run_id)
        recorder.describe("trial", f"{trial.number} of study {search.study}, {shown_values(values, '=')}")
        try:
            cfg, data, device = train_stage.setup(params, SINGLE, processes=search.jobs)
            about = train_stage.describe(recorder, params, data)
            work = Path(folder)
            result = run_training(cfg, data, TrainPaths(work / BEST, work / "train_state.pt"), device=device,
                                  params=train_stage.recorded(params, cfg),
                                  hooks=TrialRecord(trial, work, cfg.epochs, recorder, about, data.skipped))
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


def _take(remaining: Any) -> bool:
    """Claim one of this invocation's trials; False when none is left."""
    with remaining.get_lock():
        if remaining.value <= 0:
            return False
        remaining.value -= 1
        return True


def work(search: Search, index: int, remaining: Any, current: Any) -> None:
    """A worker: claims trials of this invocation one at a time and runs each as Optuna hands it out, until none
    is left (or a grid is done). A trial that fails is recorded failed and the worker goes on."""
    import optuna
    import torch

    show_library_warnings()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if search.jobs > 1 and "OMP_NUM_THREADS" not in os.environ:  # the cores are shared among the workers
        torch.set_num_threads(max(1, machine()[0] // search.jobs))
    storage = open_storage(search.storage)
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


def _worker(handover: Any, index: int, remaining: Any, current: Any) -> None:
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


def run(params_file: Path, study_name: str, storage_url: str | None, space_name: str | None, trials: int,
        jobs: int, promote: bool | None) -> None:
    """Run `trials` trials of the study over `jobs` workers here, then (promote not False) make its best trial a DVC
    experiment; promote True with no trials: only that."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    params = load_params(train_stage.Params, params_file)  # the base every trial changes
    if params.data.selection != "val":
        raise CSRAError(f"{params_file}: data.selection is {params.data.selection}: a search scores its trials on the "
                        "held-out selection split, never on the test split; set data.selection: val")
    root = tracking.repo_root()
    space = load_space(root / "conf", space_name, params_file) if space_name else None  # checked whole first
    url = storage_url or f"sqlite:///{root / DEFAULT_STORAGE}"
    storage = open_storage(url)
    with storage_errors(url):
        known = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    recorded = known[study_name].user_attrs.get("space") if study_name in known else None
    name = space_name or (recorded["name"] if recorded else DEFAULT_SPACE)
    if trials == 0 and promote:
        if study_name not in known:
            raise CSRAError(f"no study {study_name} in {shown(url)}")
        with storage_errors(url):
            study = optuna.load_study(study_name=study_name, storage=storage)
        promote_best(study, root, params.train.out_dir)
        return
    space = space or load_space(root / "conf", name, params_file)
    if recorded is not None and recorded != space.record():
        raise CSRAError(f"study {study_name} searches space {recorded['name']} as it was when the study began; "
                        f"conf/search/{name}.yaml differs now: continue with that space or name a new study")
    base = trained_from(params)
    began = known[study_name].user_attrs.get("params") if study_name in known else None
    if began is not None and began != base:
        changed = sorted(k for k in set(began) | set(base) if began.get(k) != base.get(k))
        raise CSRAError(f"study {study_name}'s trials trained from other params: {params_file} differs in "
                        f"{', '.join(f'{k} ({began.get(k)!r} then, {base.get(k)!r} now)' for k in changed[:4])}; "
                        "trials of one study must be comparable: restore them or name a new study")
    with storage_errors(url):
        study, created = open_study(study_name, storage, space)
        if created:
            study.set_user_attr("space", space.record())
            study.set_user_attr("params", base)
    typer.echo(f"study {study_name} ({'new' if created else f'{len(study.trials)} trials so far'}) in {shown(url)}, "
               f"space {space.name}: {trials} trial(s) over {jobs} worker(s) here")
    workers = Workers(jobs, trials, storage)  # forked now, before this process opens MLflow
    try:
        parent = parent_run(study, created, params.tracking.experiment, space, url, storage)
    except BaseException:
        workers.stop()
        raise
    search = Search(study_name, url, space, params_file.resolve(), parent, jobs)
    for index, number in workers.run(search):
        mark_failed(storage, study_name, number, f"worker {index} died")
    summary(study)
    tracking.connect().MlflowClient().set_terminated(parent, "FINISHED")
    if promote is not False and best_trial(study) is not None:
        promote_best(study, root, params.train.out_dir)


def trained_from(params: train_stage.Params) -> dict[str, object]:
    """What every trial of a study trains from, whatever machine runs it: train's params but the machine's own
    (the settings whose role is LOCAL: device, loader processes, where things go)."""
    local = {f"{group}.{name}" for group, kind in params.groups().items() for name in with_role(kind, LOCAL)}
    return {k: v for k, v in params.flat().items() if k.startswith(("data.", "train.")) and k not in local}


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """A storage that cannot be read or written is one line naming it."""
    try:
        yield
    except CSRAError:
        raise
    except Exception as e:
        if "sqlalchemy" in type(e).__module__ or isinstance(e, OSError):
            raise CSRAError(f"--storage {shown(url)}: {first_line(e)}") from None
        raise


class Workers:
    """This invocation's workers: this process and jobs - 1 forked ones (a forked worker starts at once, with what
    this process imported). They are forked before this process connects to MLflow or starts a thread: a database
    connection must not cross a fork. Each opens its own connections."""

    def __init__(self, jobs: int, trials: int, storage: Any):
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.remaining, self.current = context.Value("i", trials), context.Array("i", [-1] * jobs)
        self.handover = context.Queue()
        engine = getattr(storage, "engine", None)
        if engine is not None:
            engine.dispose()  # the study's connections stay here: each worker opens its own
        self.processes = [context.Process(target=_worker, args=(self.handover, i, self.remaining, self.current),
                                          name=f"csra-search-{i}") for i in range(1, jobs)]
        for process in self.processes:
            process.start()

    def stop(self) -> None:
        for _ in self.processes:
            self.handover.put(None)
        for process in self.processes:
            process.join()

    def run(self, search: Search) -> list[tuple[int, int]]:
        """Hand the study over, work as worker 0, wait for the others; (worker, trial) of each that died in a
        trial (killed by a signal)."""
        for _ in self.processes:
            self.handover.put(search)
        try:
            work(search, 0, self.remaining, self.current)
            for process in self.processes:
                process.join()
        except BaseException:
            for process in self.processes:
                process.terminate()
            raise
        died = []
        for index, process in enumerate(self.processes, start=1):
            if process.exitcode and process.exitcode < 0 and self.current[index] >= 0:
                typer.echo(f"warning: worker {index} (pid {process.pid}) was killed (signal {-process.exitcode}) "
                           f"in trial {self.current[index]}: marked failed; the other workers went on", err=True)
                died.append((index, self.current[index]))
        return died
