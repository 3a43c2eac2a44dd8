"""Epoch times of `csra train` with the tracking server up, and with it stopped after epoch 1 (started again one
epoch before the end), on the built-in data; then the two runs' metric histories as the server holds them.

    .venv/bin/python bench/bench_tracking_outage.py [--epochs 6] [--images 400] [--size 64]

Each training is a `csra train` process of its own in a scratch project, logging to one `mlflow server` on
127.0.0.1 (SQLite, proxied artifacts), system metrics every second. Prints each epoch's seconds (between two
epoch lines of the console: training and validation), their median per run, the lines the disturbed run printed
about the store, and whether the metric histories agree step for step (the timing metric images_per_s aside)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlflow server` on one port, stopped and started again."""

    def __init__(self, root: Path):
        self.root, self.port, self.process = root, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.root / "server.log").open("a")
        self.process = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1", "--port",
             str(self.port), "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise SystemExit(f"the server did not answer: see {self.root / 'server.log'}")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)


def train(project: Path, server: Server, experiment: str, epochs: int, outage: bool) -> tuple[list[float], str]:
    """(seconds of each epoch after the first, the console) of one training; outage: the server is stopped once
    epoch 1 is printed and started again once epoch epochs-1 is."""
    log = project / f"{experiment}.log"
    started = time.monotonic()
    stamps: list[float] = []
    with log.open("w") as sink:
        process = subprocess.Popen([str(BIN / "csra"), "train", "--out-dir", f"results/{experiment}"], cwd=project,
                                   stdout=sink, stderr=subprocess.STDOUT,
                                   env={**os.environ, "MLFLOW_TRACKING_URI": server.url})
        while process.poll() is None or len(stamps) < log.read_text().count(f"/{epochs}  loss"):
            seen = log.read_text().count(f"/{epochs}  loss")
            while len(stamps) < seen:
                stamps.append(time.monotonic() - started)
                if outage and len(stamps) == 1:
                    server.stop()
                if outage and len(stamps) == epochs - 1:
                    server.start()
            time.sleep(0.02)
    if process.returncode:
        raise SystemExit(f"{experiment}: exit {process.returncode}\n{log.read_text()}")
    return [b - a for a, b in zip(stamps, stamps[1:])], log.read_text()


def history(url: str, experiment: str) -> dict[str, list[tuple[int, float | None]]]:
    client = mlflow.MlflowClient(url)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    keys = sorted(k for k in run.data.metrics if not k.startswith("system/"))
    return {k: [(m.step, None if k == "images_per_s" else m.value)
                for m in sorted(client.get_metric_history(run.info.run_id, k), key=lambda m: m.step)] for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--images", type=int, default=400, help="trainval images of the built-in dataset")
    parser.add_argument("--size", type=int, default=64, help="train.img_size")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with tempfile.TemporaryDirectory(prefix="csra-outage-") as folder:
        root = Path(folder)
        project = root / "project"
        project.mkdir()
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["prepare"]["synthetic"].update(num_trainval=args.images, num_test=16, num_demo=0)
        params["train"].update(epochs=args.epochs, img_size=args.size, batch_size=16, num_workers=0, device="cpu")
        params["tracking"]["system_metrics"] = 1
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        subprocess.run([str(BIN / "csra"), "prepare"], cwd=project, check=True, capture_output=True)
        server = Server(root)
        server.start()
        try:
            runs = {}
            for experiment, outage in (("server-up", False), ("server-away", True)):
                params["tracking"]["experiment"] = experiment
                (project / "params.yaml").write_text(yaml.safe_dump(params))
                runs[experiment] = train(project, server, experiment, args.epochs, outage)
            print(f"{args.epochs} epochs of {args.images} images at {args.size} px, {os.cpu_count()} cores")
            for experiment, (times, _) in runs.items():
                print(f"{experiment:12} epochs 2..{args.epochs} (s): " + " ".join(f"{t:.2f}" for t in times)
                      + f"   median {statistics.median(times):.2f}")
            print("server-away: the server stopped after epoch 1, started again after epoch "
                  f"{args.epochs - 1}; what the training said of it:")
            for line in runs["server-away"][1].splitlines():
                if line.startswith("warning: MLflow store"):
                    print("  " + line)
            same = history(server.url, "server-up") == history(server.url, "server-away")
            print(f"metric histories in the store, step for step: {'identical' if same else 'DIFFERENT'}")
        finally:
            server.stop()
            shutil.rmtree(root / "artifacts", ignore_errors=True)


if __name__ == "__main__":
    main()
