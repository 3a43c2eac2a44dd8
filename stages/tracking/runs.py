"""MLflow's runs: one run per pipeline execution (the store: store.py; the registered model: registry.py), params,
metrics, artifacts, the data a run used and the machine's load while it trains.

Train opens its execution's run and tags it with the MD5 of the checkpoint it made. A stage after train finds that
training run by the MD5 of the checkpoint it reads (no run id in any file DVC tracks), and logs into it when train
ran in the same execution (one `dvc repro`), else into a run of its own execution, linked to the training run
(execution.py says which execution a stage runs in, and names the runs). Default store (store.py): SQLite
`mlflow.db` at the repository root, as an absolute path, so that `dvc exp run --temp/--queue` workspaces (under
.dvc/tmp/exps/) log into the same database. MLFLOW_TRACKING_URI overrides it."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Run
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.tracking.context.registry import resolve_tags

from csra.fileio import disk_errors, file_md5
from stages.common import SIGNAL_WAIT, stopping
from stages.tracking.execution import EXECUTION, execution_id, execution_tags, run_tags, unique_name
from stages.tracking.lineage import DataVersion, locked_md5
from stages.tracking.outbox import Outbox, apply, now_ms
from stages.tracking.store import connect, experiment_of, pending_root, store_errors, tracking_uri

log = logging.getLogger("csra.tracking")
TEST_FILE, TEST_DIGEST = "test.file", "test.digest"  # the annotation file evaluate scored, by path and items_digest
DATA_DIGEST = "dataset.digest"  # DVC's hash of the prepared data a model was trained on
# On a stage's run whose checkpoint's training run is not in this store (a clone that pulled the model, not the
# store): the run then records what the workspace knows of the checkpoint instead of a link.
UNTRACED = "csra.training_run"
FLUSH_WAIT = 60  # s a read of a run with an outbox waits for the records put before it
NOTE = "mlflow.note.content"  # a run's description in the UI: one line, a clause per stage that recorded into it


class Recorder:
    """The active MLflow run, through the few calls the stages make; train_run_id is the training run it builds
    on (itself for train), None when it builds on none. Its records go to the store at once, or, with an outbox
    (a training's run), through it (outbox.py): the training never waits for the store."""

    def __init__(self, mlflow: ModuleType, run_id: str, train_run_id: str | None = None,
                 outbox: Outbox | None = None, note: str | None = None):
        self.mlflow, self.run_id, self.train_run_id, self.outbox = mlflow, run_id, train_run_id, outbox
        self.note = note  # the run's description as this process last set it (None: not read yet)
        self.ended: str | None = None  # the status the run was ended with here (end)

    def send(self, record: dict[str, Any]) -> None:
        """One record (outbox.apply says which): into the outbox, else to the store now."""
        if self.outbox is not None:
            self.outbox.put(record)
        else:
            apply(self.mlflow.MlflowClient(), self.run_id, record)

    def run(self, run_id: str | None = None) -> Run:
        """This run as the store holds it now, with every record sent so far (or another of its runs: the training
        run it builds on)."""
        if self.outbox is not None:
            self.outbox.flush(FLUSH_WAIT)
        return self.mlflow.get_run(run_id or self.run_id)

    def metrics(self, values: dict[str, float], step: int | None = None) -> None:
        """Log metrics; NaN values (an undefined metric) are left out."""
        at = now_ms()
        self.send({"op": "log", "metrics": [[k, float(v), at, step or 0] for k, v in values.items()
                                            if not math.isnan(v)]})

    def tags(self, values: dict[str, str]) -> None:
        self.send({"op": "log", "tags": [[k, str(v)] for k, v in values.items()]})

    def tag(self, key: str, value: str) -> None:
        self.tags({key: value})

    def describe(self, stage: str, what: str) -> None:
        """Say in the run's one-line description (NOTE) what stage did, `stage: what`, after what the earlier
        stages of its execution said; a stage that says it again replaces its own clause, where it was."""
        clause = f"{stage}: " + " ".join(what.replace("; ", ", ").split())  # one line; "; " parts the clauses
        if self.note is None:
            self.note = self.mlflow.get_run(self.run_id).data.tags.get(NOTE, "")
        clauses = [c for c in self.note.split("; ") if c]
        mine = next((i for i, c in enumerate(clauses) if c.startswith(f"{stage}: ")), len(clauses))
        clauses[mine:mine + 1] = [clause]
        self.note = "; ".join(clauses)
        self.tag(NOTE, self.note)

    def end(self, status: str) -> None:
        """End the run now with this status (KILLED: a search trial its pruner stopped)."""
        if self.outbox is not None:
            self.send({"op": "end", "status": status, "end_time": now_ms()})
        else:
            self.mlflow.end_run(status)
        self.ended = status

    def artifact(self, path: Path, folder: str | None = None) -> None:
        self.send({"op": "artifact", "file": str(path), "folder": folder})

    def artifacts(self, path: Path, folder: str) -> None:
        self.send({"op": "artifacts", "file": str(path), "folder": folder})

    def text(self, text: str, artifact_file: str) -> None:
        """A text artifact (written anew when logged again): MLflow's, never a DVC-tracked file."""
        self.send({"op": "text", "text": text, "name": artifact_file})

    def record(self, values: dict[str, Any], artifact_file: str) -> None:
        """A record of this execution (ids, versions) as a JSON artifact: MLflow's, never a DVC-tracked file."""
        self.send({"op": "dict", "value": values, "name": artifact_file})

    def checkpoint(self, path: Path, where: Path) -> None:
        """Say which checkpoint this run made without storing its bytes a second time (DVC keeps it): where it
        lives and its MD5, the key of DVC's cache (`.dvc/cache/files/md5/<first 2>/<rest>`)."""
        self.tags({"checkpoint": str(where), "checkpoint.md5": file_md5(path)})

    def dataset(self, data: DataVersion, context: str) -> None:
        """Log data as a run input (context: training, evaluation): its name, source path, DVC's hash as the
        digest and the items of each annotation file as its profile."""
        entity = as_mlflow_dataset(data)._to_mlflow_entity()
        fields = ("name", "digest", "source_type", "source", "schema", "profile")
        self.send({"op": "input", "context": context, "dataset": {f: getattr(entity, f) for f in fields}})

    def model_metrics(self, model_id: str, values: dict[str, float], data: DataVersion | None) -> None:
        """Metrics of a logged model (what its page lists), computed on data (its 'Datasets used')."""
        dataset = as_mlflow_dataset(data) if data is not None else None
        self.mlflow.log_metrics({k: v for k, v in values.items() if not math.isnan(v)}, model_id=model_id,
                                dataset=dataset)


def as_mlflow_dataset(data: DataVersion) -> MetaDataset:
    """data as an MLflow dataset: its name, source path, DVC's hash as the digest and the items of each annotation
    file as its profile."""
    class Prepared(MetaDataset):
        @property
        def profile(self) -> dict[str, int]:
            return data.items

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    return Prepared(resolve_dataset_source(data.source), name=data.name, digest=data.digest)


@contextmanager
def training_run(experiment: str, params: dict[str, Any], name: str, run_id: str | None = None,
                 system_metrics: float = 0, tags: dict[str, str] | None = None,
                 sync_wait: float = 120) -> Iterator[Recorder]:
    """Open this execution's run for train: a new run with every param, the execution's tags and name; yields its
    Recorder, whose records go through an outbox (outbox.py), so the store never holds the training up. With run_id
    (a resumed training) that interrupted run is reopened and marked with this execution, so the stages after train
    join it. With system_metrics > 0, MLflow's samplers read CPU, memory, disk, network (and GPUs, with
    nvidia-ml-py) every that many seconds while the run is open. tags: the caller's (a search trial's parent run
    and trial number). The run ends FINISHED, FAILED, or KILLED when a signal stopped the process; the end waits up
    to sync_wait seconds for the store to take every record (only a few seconds after a signal)."""
    mlflow = connect()
    client = mlflow.MlflowClient()
    with store_errors(f"log runs to the experiment '{experiment}'"):
        marks = {**run_tags(), **execution_tags(execution_id()), **(tags or {})}
        resumed = run_id is not None
        if run_id is None:
            experiment_id = experiment_of(mlflow, experiment)
            run_id = client.create_run(experiment_id, run_name=unique_name(mlflow, experiment_id, name),
                                       tags=resolve_tags(marks)).info.run_id
            apply(client, run_id, {"op": "log", "params": [[k, str(v)] for k, v in params.items()]})
            note = ""
        else:
            run = client.get_run(run_id)
            client.update_run(run_id, status="RUNNING")
            apply(client, run_id, {"op": "log", "tags": [[k, v] for k, v in marks.items()]})
            note = run.data.tags.get(NOTE, "")
        monitor = SystemMetrics(run_id, system_metrics, resumed=resumed) if system_metrics > 0 else None
    try:
        with disk_errors(pending_root()):  # a folder it cannot write is one line
            outbox = Outbox(pending_root(), run_id, tracking_uri(), name)
    except BaseException:
        client.set_terminated(run_id, "FAILED")  # nothing was trained: the run does not stay RUNNING
        raise
    recorder = Recorder(mlflow, run_id, run_id, outbox, note)
    if monitor is not None:
        monitor.start(recorder)
    status, wait = "FINISHED", sync_wait
    try:
        yield recorder
    except BaseException as e:
        status = "KILLED" if stopping(e) else "FAILED"
        wait = min(sync_wait, SIGNAL_WAIT) if status == "KILLED" else sync_wait
        raise
    finally:
        if monitor is not None:
            monitor.finish()
        if recorder.ended is None:
            recorder.end(status)
        recorder.outbox.close(wait)


class SystemMetrics(SystemMetricsMonitor):
    """MLflow's samplers of the machine's load (CPU, memory, disk, network, GPUs), logged through the run's
    Recorder (so through its outbox) rather than straight to the store; a resumed run's steps go on from its last."""

    def __init__(self, run_id: str, interval: float, resumed: bool):
        super().__init__(run_id, sampling_interval=interval, resume_logging=resumed)
        self.recorder: Recorder | None = None

    def start(self, recorder: Recorder) -> None:  # type: ignore[override]
        self.recorder = recorder
        super().start()

    def monitor(self) -> None:
        """The sampling thread: sample every interval, log the aggregate of each samples_before_logging samples."""
        while not self._shutdown_event.is_set():
            for _ in range(self.samples_before_logging):
                self.collect_metrics()
                if self._shutdown_event.wait(self.sampling_interval):
                    return
            self.publish_metrics(self.aggregate_metrics())

    def publish_metrics(self, metrics: dict[str, float]) -> None:
        prefix = self._metrics_prefix + (f"{self.node_id}/" if self.node_id else "")
        self.recorder.metrics({prefix + k: v for k, v in metrics.items()}, step=self._logging_step)
        self._logging_step += 1
        for monitor in self.monitors:
            monitor.clear_metrics()

    def finish(self) -> None:
        self._shutdown_event.set()
        if self._process is not None:
            self._process.join()


def training_run_by_md5(mlflow: ModuleType, md5: str, execution: str) -> Run | None:
    """The training run that made the checkpoint of MD5 md5 (the tag checkpoint.md5, in any experiment of the
    store): this execution's, else the latest; None when the store has none (an official state dict, a checkpoint
    trained against another store)."""
    query = f"tags.`checkpoint.md5` = '{md5}'"
    found = mlflow.search_runs(search_all_experiments=True, filter_string=query, output_format="list",
                               order_by=["attributes.start_time DESC"])
    found = [run for run in found if UNTRACED not in run.data.tags]  # a stage's run that only names the checkpoint
    return next((run for run in found if run.data.tags.get(EXECUTION) == execution), found[0] if found else None)


def workspace_provenance(checkpoint: Path, md5: str, saved: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """(tags, params) that the workspace knows of a checkpoint (of MD5 md5) without its training run: where it is
    and its MD5, its recipe, and dvc.lock's hash of the prepared data it was trained on; the settings it records."""
    recorded = saved.get("params") if isinstance(saved.get("params"), dict) else {}
    recipe = saved.get("recipe") if isinstance(saved.get("recipe"), dict) else {}
    tags = {"checkpoint": str(checkpoint), "checkpoint.md5": md5, UNTRACED: "not in this store"}
    if isinstance(recorded.get("train.recipe"), str):
        tags["recipe"] = recorded["train.recipe"]
    prepared = recorded.get("data.prepared_dir")
    digest = locked_md5(Path(prepared)) if isinstance(prepared, str) else None
    if digest:
        tags[DATA_DIGEST] = digest
    return tags, {**{f"train.{k}": v for k, v in recipe.items()}, **recorded}


@contextmanager
def stage_run(checkpoint: Path | None, experiment: str, params: dict[str, Any], name: str,
              saved: dict[str, Any] | None = None) -> Iterator[Recorder]:
    """This execution's run for a stage after train (evaluate, demo, export) that reads checkpoint (saved: its
    fields): the training run if train ran in this same execution; else this execution's own run — found by its
    tag, or created and linked to the training run it builds on (tag csra.train_run_id, nested under it). When
    the store has no training run of our checkpoint, the new run says so (a warning, the tag UNTRACED) and records
    what the workspace knows instead (workspace_provenance). The stage adds the params it read that the run does
    not hold yet. Another execution's run is never changed."""
    mlflow = connect()
    execution = execution_id()
    with store_errors(f"log runs to the experiment '{experiment}'"):
        md5 = file_md5(checkpoint) if checkpoint is not None and checkpoint.is_file() else None  # read once
        trained = training_run_by_md5(mlflow, md5, execution) if md5 is not None else None
        experiment_id = trained.info.experiment_id if trained else experiment_of(mlflow, experiment)
        train_run_id = trained.info.run_id if trained else None
        run_id = _execution_run(mlflow, experiment_id, execution, trained)
        started = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(
            experiment_id=experiment_id, run_name=unique_name(mlflow, experiment_id, name))
        with started as run:
            known: dict[str, Any] = {}
            if run_id is None:
                links = {"csra.train_run_id": train_run_id, "mlflow.parentRunId": train_run_id} if train_run_id else {}
                untraced = {}
                if trained is None and md5 is not None and saved is not None and "recipe" in saved:
                    untraced, known = workspace_provenance(checkpoint, md5, saved)
                    log.warning("warning: the training run of %s (MD5 %s) is not in the MLflow store %s: this run "
                                "records what the workspace knows of it", checkpoint, untraced["checkpoint.md5"],
                                tracking_uri())
                mlflow.set_tags({**run_tags(), **execution_tags(execution), **links, **untraced})
            logged = mlflow.get_run(run.info.run_id).data.params  # each stage adds the params it read
            mlflow.log_params({k: v for k, v in {**params, **known}.items() if k not in logged})
            try:
                yield Recorder(mlflow, run.info.run_id, train_run_id)
            except BaseException as e:
                if stopping(e):  # a signal: the run ends KILLED (MLflow's own exit would say FAILED)
                    mlflow.end_run("KILLED")
                raise


def _execution_run(mlflow: ModuleType, experiment_id: str, execution: str, trained: Run | None) -> str | None:
    """The id of this execution's run: the training run when it carries this execution's tag, else a run of
    this execution built on the same training run; None when there is none yet."""
    if trained is not None and trained.data.tags.get(EXECUTION) == execution:
        return trained.info.run_id
    query = f"tags.`{EXECUTION}` = '{execution}'"
    if trained is not None:
        query += f" and tags.`csra.train_run_id` = '{trained.info.run_id}'"
    found = mlflow.search_runs([experiment_id], filter_string=query, output_format="list", max_results=1)
    return found[0].info.run_id if found else None
