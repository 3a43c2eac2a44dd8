"""Optuna's storage of a search's studies: a database URL or a journal file, opened with heartbeats, a study
created or loaded in it, and its failures as one line naming it."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend

from csra.errors import CSRAError, first_line
from stages.databases import check_database, database_problem, is_server_database, shown
from stages.search.records import stale_trial
from stages.search.space import Space

DEFAULT_STORAGE = "optuna.db"  # the embedded study storage at the repository root (git-ignored)
# An RDB storage's workers beat every HEARTBEAT s (or a third of a shorter grace period); a trial whose worker is silent
# for GRACE s (`csra search --grace`: a machine that died) is marked failed by the next worker that starts a trial or
# ends its invocation. A dead worker process is marked at once by its invocation.
HEARTBEAT, GRACE = 20, 90
SCHEMA_TRIES = 3  # times a worker opens a new database's schema that another worker is creating


def open_storage(url: str, grace: int = GRACE) -> BaseStorage:
    """Optuna's storage for url: a database URL (with heartbeats, and grace seconds of silence before a trial counts
    as dead), else a journal file at that path."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the heartbeat's
    try:
        if "://" not in url:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(url))
        if is_server_database(url):
            check_database(url, "--storage")  # in seconds, and what to fix
        engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        for attempt in range(SCHEMA_TRIES):
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat(grace),
                                                  grace_period=grace, heartbeat_stale_trial_callback=stale_trial)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                # workers that open a new database together each create Optuna's tables; on PostgreSQL all but one
                # fail (a duplicate type or table): the tables now exist, and the next try finds them
                if attempt == SCHEMA_TRIES - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except CSRAError:
        raise
    except Exception as e:  # a database that cannot be reached or read
        raise CSRAError(f"--storage {shown(url)}: {first_line(e)}") from None


def heartbeat(grace: int) -> int:
    """Seconds between a worker's beats: HEARTBEAT, or a third of a grace period shorter than three beats."""
    return max(1, min(HEARTBEAT, grace // 3))


def open_study(name: str, storage: BaseStorage, space: Space) -> tuple[optuna.Study, bool]:
    """(the study, whether this call created it): creating is atomic in the storage, so of several invocations
    that start a new study together exactly one creates it (and its MLflow parent run)."""
    try:
        return optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                   sampler=space.make_sampler(None), pruner=space.make_pruner()), True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=storage, sampler=space.make_sampler(None),
                                 pruner=space.make_pruner()), False


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """A storage that cannot be read or written is one line naming it."""
    try:
        yield
    except CSRAError:
        raise
    except Exception as e:
        if "sqlalchemy" in type(e).__module__ and is_server_database(url):
            raise CSRAError(database_problem(url, "--storage", e)) from None
        if "sqlalchemy" in type(e).__module__ or isinstance(e, OSError):
            raise CSRAError(f"--storage {shown(url)}: {first_line(e)}") from None
        raise
