"""A training run's records on their way to the MLflow store, so that the store never stops a training.

Every record (metrics, params, tags, artifacts, the run's input, its end) is written first, in order, as one line
of `mlflow-pending/<run id>/records.jsonl` at the repository root (a file it names is copied beside it, as it was
then), and a thread sends the lines to the store one after the other: the training loop only appends. When the
store does not answer, the thread says so once, tries again with a growing pause, and says once when it answers
again; training goes on. `sent` holds how many lines have gone, so that a line is sent once (a resent one — its
answer lost — changes nothing: metrics keep their step and timestamp, params and tags their value).

At the end the stage waits a bounded time (tracking.sync_wait) for the rest; if the store is still away, the folder
stays, one line says what is pending and where, and `csra sync` sends it later, as the next stage that opens the
store does (store.connect). A folder whose sender is alive is locked (flock), so nothing else sends it meanwhile."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from csra.errors import CSRAError, first_line
from csra.fileio import write_json, write_text

log = logging.getLogger("csra.tracking")
PENDING = "mlflow-pending"  # beside a SQLite store, else at the repository root: a folder per run with records unsent
RECORDS, SENT, ABOUT, FILES, LOCK = "records.jsonl", "sent", "run.json", "files", "lock"
# The store refused the record itself (it will refuse it again): the record is left out with a warning.
REFUSED_RECORD = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST", "INVALID_STATE"}
PAUSES = (0.5, 1, 2, 4, 8)  # s between tries while the store does not answer (then the last, again and again)
AWAY_AFTER = 3  # failed tries in a row before the store is said to be away (a single blip says nothing)
BATCH = {"metrics": 1000, "params": 100, "tags": 100}  # the most of each that one log_batch call takes


def now_ms() -> int:
    """MLflow's timestamps: milliseconds since the epoch."""
    return int(time.time() * 1000)


def apply(client: MlflowClient, run_id: str, record: dict[str, Any], base: Path | None = None) -> None:
    """Send one record to the store now (base: the folder its copied files are in; None: the paths are the
    originals)."""
    kind = record["op"]
    if kind == "log":
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in record.get("metrics", [])]
        params = [Param(k, v) for k, v in record.get("params", [])]
        tags = [RunTag(k, v) for k, v in record.get("tags", [])]
        while metrics or params or tags:
            client.log_batch(run_id, metrics=metrics[:BATCH["metrics"]], params=params[:BATCH["params"]],
                             tags=tags[:BATCH["tags"]])
            metrics, params, tags = metrics[BATCH["metrics"]:], params[BATCH["params"]:], tags[BATCH["tags"]:]
    elif kind in ("artifact", "artifacts"):
        path = str(base / record["file"]) if base is not None else record["file"]
        send = client.log_artifact if kind == "artifact" else client.log_artifacts
        send(run_id, path, record.get("folder"))
    elif kind == "text":
        client.log_text(run_id, record["text"], record["name"])
    elif kind == "dict":
        client.log_dict(run_id, record["value"], record["name"])
    elif kind == "input":
        dataset = Dataset(**record["dataset"])
        client.log_inputs(run_id, [DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, record["context"])])])
    elif kind == "end":
        client.set_terminated(run_id, record["status"], record["end_time"])
    else:
        raise CSRAError(f"unknown MLflow record {kind!r}")


def reason(error: BaseException) -> str:
    """Why a try got no answer, in a few words (MLflow's message repeats the URL and urllib3's whole chain)."""
    text = first_line(error)
    for needle, said in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                         ("Name or service not known", "unknown host"), ("RemoteDisconnected", "connection closed"),
                         ("Connection reset", "connection reset"), ("database is locked", "database locked")):
        if needle in text:
            return said
    status = getattr(getattr(error, "response", None), "status_code", None) or getattr(error, "error_code", None)
    return str(status) if status else text[:160]


def refused_record(error: BaseException) -> bool:
    """True when the store answered and refused this record (sending it again would not help)."""
    return isinstance(error, MlflowException) and error.error_code in REFUSED_RECORD


@contextmanager
def failing_fast(uri: str) -> Iterator[None]:
    """MLflow's HTTP client retries a failed request for minutes; the outbox's thread tries again itself, so while
    it runs a request fails at once (unless the user set MLflow's own variables). Only the outbox's thread talks to
    the store meanwhile: the training's records all go through it."""
    if not uri.startswith(("http://", "https://")):
        yield
        return
    mine = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
    mine = {k: v for k, v in mine.items() if k not in os.environ}
    os.environ.update(mine)
    try:
        yield
    finally:
        for key in mine:
            os.environ.pop(key, None)


class Outbox:
    """The records of one run (run_id, in the store at uri; what: a few words for the messages) on their way:
    put() appends one, a thread sends them in order, close() waits for the rest (bounded)."""

    def __init__(self, root: Path, run_id: str, uri: str, what: str):
        self.folder, self.run_id, self.uri, self.what = root / run_id, run_id, uri, what
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock = (self.folder / LOCK).open("a")
        fcntl.flock(self.lock, fcntl.LOCK_EX)  # nothing else sends this run while we do
        write_json(self.folder / ABOUT, {"run_id": run_id, "store": uri, "what": what})
        self.records = read_records(self.folder)  # a killed attempt's unsent records go first
        self.sent = read_sent(self.folder)
        self.journal = (self.folder / RECORDS).open("a")
        self.changed = threading.Condition()
        self.closing = self.stopped = False
        self.failures, self.away_since = 0, None
        self.thread = threading.Thread(target=self._send_all, name="csra-mlflow-outbox", daemon=True)
        self.fast = failing_fast(uri)
        self.fast.__enter__()
        self.thread.start()

    def put(self, record: dict[str, Any]) -> None:
        """Append a record (a file it names is copied now: the record holds it as it is at this moment)."""
        if record["op"] in ("artifact", "artifacts"):
            source = Path(record["file"])
            copy = Path(FILES) / str(len(self.records)) / source.name
            (self.folder / copy).parent.mkdir(parents=True, exist_ok=True)
            if record["op"] == "artifact":
                shutil.copyfile(source, self.folder / copy)
            else:
                shutil.copytree(source, self.folder / copy)
            record = {**record, "file": str(copy)}
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self.changed:
            self.journal.write(line)
            self.journal.flush()
            os.fsync(self.journal.fileno())
            self.records.append(record)
            self.changed.notify_all()

    def _send_all(self) -> None:
        """The thread: send the records in order, each until the store takes it (or refuses it), pausing while
        the store does not answer; ends when closed and none is left, or when stopped."""
        client = MlflowClient(self.uri)
        while True:
            with self.changed:
                while self.sent == len(self.records) and not self.closing and not self.stopped:
                    self.changed.wait()
                if self.stopped or self.sent == len(self.records):
                    return
                record = self.records[self.sent]
            try:
                apply(client, self.run_id, record, self.folder)
            except Exception as e:
                if refused_record(e):
                    log.warning("warning: MLflow store %s refused a record of run %s (%s): %s; it is left out",
                                self.uri, self.run_id, record["op"], first_line(e))
                else:
                    self._failed(e)
                    continue
            self._advance()

    def _failed(self, error: Exception) -> None:
        """A try that got no answer: say once that the store is away, then pause before the next."""
        self.failures += 1
        if self.failures == AWAY_AFTER:
            self.away_since = time.monotonic()
            log.warning("warning: MLflow store %s does not answer (%s): training goes on; its records are kept in "
                        "%s and sent when the store answers", self.uri, reason(error), self.folder)
        pause = PAUSES[min(self.failures - 1, len(PAUSES) - 1)]
        with self.changed:
            self.changed.wait_for(lambda: self.stopped, timeout=pause)

    def _advance(self) -> None:
        """One more record sent: count it on disk, and say once that the store is back."""
        with self.changed:
            self.sent += 1
            write_text(self.folder / SENT, f"{self.sent}\n")
            self.changed.notify_all()
        if self.away_since is not None:
            log.warning("warning: MLflow store %s answers again after %.0f s: the %d records kept meanwhile are "
                        "being sent", self.uri, time.monotonic() - self.away_since, len(self.records) - self.sent + 1)
        self.failures, self.away_since = 0, None

    def flush(self, wait: float) -> None:
        """Wait up to wait seconds until every record put so far has been sent (a read of the run then sees them)."""
        with self.changed:
            self.changed.wait_for(lambda: self.sent == len(self.records), timeout=wait)

    @property
    def pending(self) -> int:
        return len(self.records) - self.sent

    def close(self, wait: float) -> bool:
        """Wait up to wait seconds for every record to be sent; True when all were (the folder goes), else False:
        the folder stays for `csra sync`, and one line says so."""
        with self.changed:
            self.closing = True
            self.changed.notify_all()
        self.thread.join(wait)
        with self.changed:
            self.stopped = True
            self.changed.notify_all()
        self.thread.join(1)  # a request on its way may still land; the thread ends after it
        self.fast.__exit__(None, None, None)
        self.journal.close()
        done = self.pending == 0
        if done:
            remove(self.folder)
        else:
            log.warning("warning: MLflow store %s did not answer within %.0f s: %d records of run %s (%s) are kept "
                        "in %s; `csra sync` sends them (so does the next stage that opens the store)", self.uri,
                        wait, self.pending, self.run_id, self.what, self.folder)
        self.lock.close()
        return done


def read_records(folder: Path) -> list[dict[str, Any]]:
    """The records of an outbox folder, in order (a last line cut short by a kill is left out)."""
    path = folder / RECORDS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    if records and path.read_text().count("\n") != len(records):  # drop the cut line, so appends stay lines
        write_text(path, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    return records


def read_sent(folder: Path) -> int:
    """How many of the folder's records have been sent."""
    try:
        return int((folder / SENT).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def pending_runs(root: Path, uri: str | None = None) -> list[Path]:
    """The outbox folders under root (of runs in the store at uri, when given), oldest first."""
    if not root.is_dir():
        return []
    folders = []
    for folder in root.iterdir():
        try:
            about = json.loads((folder / ABOUT).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if uri is None or about.get("store") == uri:
            folders.append(folder)
    return sorted(folders, key=lambda f: f.stat().st_mtime)


def send_pending(folder: Path) -> tuple[dict[str, Any], int] | None:
    """Send an outbox folder's unsent records now, in order, with MLflow's own retries; the folder goes once all
    are sent. (its run.json, how many were sent), or None when another process is sending it (its lock is held).
    A store that does not answer raises (store.store_errors makes that one line)."""
    about = json.loads((folder / ABOUT).read_text())
    with (folder / LOCK).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        records, sent = read_records(folder), read_sent(folder)
        client = MlflowClient(about["store"])
        for index in range(sent, len(records)):
            try:
                if index == sent:  # is the store there? one try, not MLflow's minutes of retries
                    with failing_fast(about["store"]):
                        apply(client, about["run_id"], records[index], folder)
                else:
                    apply(client, about["run_id"], records[index], folder)
            except Exception as e:
                if not refused_record(e):
                    raise
                log.warning("warning: MLflow store %s refused a record of run %s (%s): %s; it is left out",
                            about["store"], about["run_id"], records[index]["op"], first_line(e))
            write_text(folder / SENT, f"{index + 1}\n")
        remove(folder)
    return about, len(records) - sent


def remove(folder: Path) -> None:
    """An outbox folder whose records are all sent goes; so does mlflow-pending/ when it is left empty."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()
    except OSError:
        pass
