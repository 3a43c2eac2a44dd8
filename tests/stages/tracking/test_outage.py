"""The tracking store never costs a training: a real `mlflow server` on 127.0.0.1 is stopped while `csra train`
runs (a process of its own, as a user starts it) and started again — one epoch later, or only after the training
has ended. The training goes on, its outputs are byte for byte those of an undisturbed run, and the store ends up
with the same run: the same metric history, step for step, FINISHED — sent when the server was back, or by
`csra sync`."""

import shutil
import threading
import time

import mlflow
import pytest
import yaml
from helpers import (
    BIN,
    assert_one_line_error,
    free_port,
    merge,
    new_store,
    run,
    start,
    stop,
    tiny_params_dict,
    wait_until_answers,
)

from csra.train.run import TIMINGS
from stages.tracking.outbox import PENDING

WAIT_S = 240


class Server:
    """`mlflow server` on a SQLite store in root, on one port, stopped and started again at will."""

    def __init__(self, root, store):
        self.root, self.store, self.port, self.process = root, store, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self):
        self.process = start([str(BIN / "mlflow"), "server", "--backend-store-uri", self.store,
                              "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
                              "--port", str(self.port), "--workers", "1"], self.root / "server.log", cwd=self.root,
                             MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        wait_until_answers(f"{self.url}/health", self.process, self.root / "server.log")

    def stop(self):
        stop(self.process)


@pytest.fixture(scope="module")
def server(tmp_path_factory, mlflow_template):
    root = tmp_path_factory.mktemp("server")
    server = Server(root, new_store(root, mlflow_template))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A project folder with the tiny built-in data prepared, which each training copies."""
    root = tmp_path_factory.mktemp("prepared")
    params = merge(tiny_params_dict(), {"train": {"epochs": 2}, "tracking": {"system_metrics": 0.5}})
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        run("prepare")
    return root


class Training:
    """`csra train` in a copy of the prepared project, tracking to the server in an experiment of its own: run
    in a thread of this process (what it prints is the training's output), while the test stops and starts the
    server. The working folder and MLFLOW_TRACKING_URI are the training's until it ends."""

    def __init__(self, prepared, folder, server, experiment, patch, **tracking):
        shutil.copytree(prepared, folder)
        params = yaml.safe_load((folder / "params.yaml").read_text())
        params["tracking"].update(experiment=experiment, **tracking)
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
        self.folder, self.server, self.experiment, self.result = folder, server, experiment, None
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", server.url)
        self.thread = threading.Thread(target=self._train)
        self.thread.start()

    def _train(self):
        self.result = run("train")

    def epochs_done(self):
        for folder in ("train.partial", "train"):
            history = self.folder / "results" / folder / "history.csv"
            if history.is_file():
                return len(history.read_text().splitlines()) - 1
        return 0

    def wait_for_epoch(self, epoch):
        """Until the training has written epoch's row of history.csv (it must, before it ends)."""
        deadline = time.monotonic() + WAIT_S
        while self.epochs_done() < epoch:
            assert self.thread.is_alive(), f"the training ended before epoch {epoch}: {self.result}"
            assert time.monotonic() < deadline
            time.sleep(0.02)

    def end(self):
        """(exit code, output) once the training has ended."""
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive()
        return self.result

    def outputs(self):
        folder = self.folder / "results" / "train"
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}

    def run(self):
        """The experiment's one run, as the server holds it."""
        client = mlflow.MlflowClient(self.server.url)
        experiment = client.get_experiment_by_name(self.experiment)
        (found,) = client.search_runs([experiment.experiment_id])
        return found

    def metric_history(self):
        """Every metric the training logged (the machine's load aside), step by step: its values, less those that
        time the machine (images_per_s)."""
        client, run = mlflow.MlflowClient(self.server.url), self.run()
        keys = sorted(k for k in run.data.metrics if not k.startswith("system/"))
        return {key: [(m.step, None if key in TIMINGS else m.value)
                      for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
                for key in keys}


@pytest.fixture(scope="module")
def undisturbed(prepared, server, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        training = Training(prepared, tmp_path_factory.mktemp("undisturbed") / "project", server, "undisturbed",
                            patch)
        code, output = training.end()
    assert code == 0, output
    return training


def test_the_server_away_for_an_epoch_costs_nothing(prepared, server, undisturbed, tmp_path, monkeypatch):
    training = Training(prepared, tmp_path / "project", server, "away-one-epoch", monkeypatch)
    training.wait_for_epoch(1)
    server.stop()
    training.wait_for_epoch(2)  # trained while the server was away
    server.start()
    code, output = training.end()
    assert code == 0, output
    assert "does not answer (connection refused): training goes on" in output
    assert "answers again" in output and "Traceback" not in output
    assert training.outputs() == undisturbed.outputs()
    run = training.run()
    assert run.info.status == "FINISHED" and run.data.tags["checkpoint"] == "results/train/best.pt"
    assert training.metric_history() == undisturbed.metric_history()
    assert any(k.startswith("system/") for k in run.data.metrics)  # the machine's load, sampled while away too
    assert not (training.folder / PENDING).exists()


def test_the_server_away_until_the_end_then_csra_sync(prepared, server, undisturbed, tmp_path, monkeypatch):
    training = Training(prepared, tmp_path / "project", server, "away-to-the-end", monkeypatch, sync_wait=1)
    training.wait_for_epoch(1)
    server.stop()
    try:
        code, output = training.end()
        assert code == 0, output  # the stage's outputs are complete: DVC would write its lock
        assert training.outputs() == undisturbed.outputs()
        (line,) = [line for line in output.splitlines() if "did not answer within" in line]
        pending = training.folder / PENDING
        (kept,) = pending.iterdir()
        assert f"are kept in {kept}; `csra sync` sends them" in line
        assert_one_line_error(*run("sync"), f"MLflow tracking store {server.url}: ", f"stay in {pending}")
        assert kept.is_dir()
    finally:
        server.start()
    code, output = run("sync")
    assert code == 0 and f"run {kept.name}: " in output and f"record(s) sent to {server.url}" in output, output
    run_ = training.run()
    assert run_.info.run_id == kept.name and run_.info.status == "FINISHED"
    assert training.metric_history() == undisturbed.metric_history()
    assert not pending.exists() and run("sync") == (0, f"nothing to send to {server.url}\n")  # idempotent
    assert training.metric_history() == undisturbed.metric_history()  # nothing sent twice
