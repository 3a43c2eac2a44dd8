"""Serving photos: `mlflow models serve` of a registered model on loopback against the in-process Python API on the
same photo files, in one run.

For a VOC-size JPEG (500x375) and a 12-megapixel JPEG (4000x3000), both photo-like scenes of the built-in dataset:
the request's size; one client's latency (p50, p99) over --requests requests; then --clients concurrent clients of
--requests requests each: latency p50/p99 and throughput; the server's peak memory (the sum of its processes'
peak RSS); and the in-process API (`csra.load_model(checkpoint).score([file])`) on the same files, warmed up.

    python bench/bench_serving.py          # models:/csra-synthetic@champion and results/train/best.pt of make repro
    python bench/bench_serving.py --clients 8 --requests 10
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from csra.deploy.export import photo_file  # noqa: E402

PHOTOS = {"VOC-size JPEG 500x375": (375, 500), "12 MP JPEG 4000x3000": (3000, 4000)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes) -> float:
    """Seconds until the answer (which must be a 200 with one prediction)."""
    start = time.perf_counter()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        answer = json.loads(response.read())
    assert len(answer["predictions"]) == 1, answer
    return time.perf_counter() - start


def tree_rss_peak(pid: int) -> int:
    """The sum of VmHWM (peak resident set) of pid and its descendants, in bytes."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM"))
        todo += [int(c) for c in children]
    return total


def percentiles(values: list[float]) -> str:
    ms = np.array(values) * 1000
    return f"p50 {np.percentile(ms, 50):7.0f} ms  p99 {np.percentile(ms, 99):7.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-uri", default="models:/csra-synthetic@champion")
    parser.add_argument("--checkpoint", type=Path, default=REPO / "results/train/best.pt")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{REPO}/mlflow.db"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10, help="requests per client (and of the one client)")
    args = parser.parse_args()

    import csra

    port = free_port()
    url = f"http://127.0.0.1:{port}/invocations"
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", args.model_uri, "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": args.tracking_uri,  # its uvicorn is the environment's
             "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"})
    peak = 0
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    sys.exit(f"error: the server exited:\n{Path(log.name).read_text()[-3000:]}")
                time.sleep(0.5)
        stop = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, tree_rss_peak(server.pid))
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        classifier = csra.load_model(args.checkpoint, device="cpu")
        print(f"{args.model_uri} served on loopback; in-process: csra.load_model({args.checkpoint}).score; "
              f"{os.cpu_count()} cores")
        with tempfile.TemporaryDirectory() as folder:
            for name, (height, width) in PHOTOS.items():
                data = photo_file(height, width, 0, "JPEG")
                path = Path(folder) / "photo.jpg"
                path.write_bytes(data)
                body = json.dumps({"dataframe_records": [{"image": base64.b64encode(data).decode()}]}).encode()
                post(url, body)  # warm-up
                one = [post(url, body) for _ in range(args.requests)]
                classifier.score([path])  # warm-up; then the API alone (two processes' thread pools would share the
                local = []  # cores if the calls were interleaved with the requests)
                for _ in range(args.requests):
                    start = time.perf_counter()
                    classifier.score([path])
                    local.append(time.perf_counter() - start)
                total = args.clients * args.requests
                start = time.perf_counter()
                with ThreadPoolExecutor(args.clients) as pool:
                    many = list(pool.map(post, [url] * total, [body] * total))
                elapsed = time.perf_counter() - start
                print(f"\n{name}: file {len(data) / 1e3:.0f} kB, request {len(body) / 1e3:.0f} kB")
                print(f"  in-process API      {percentiles(local)}")
                print(f"  server, 1 client    {percentiles(one)}  ({np.median(one) / np.median(local):.2f}x the API)")
                print(f"  server, {args.clients} clients   {percentiles(many)}  "
                      f"{len(many) / elapsed:.2f} requests/s")
        stop.set()
        watcher.join()
        print(f"\nserver peak memory (sum of its processes' peak RSS): {peak / 2**30:.2f} GiB")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        os.unlink(log.name)


if __name__ == "__main__":
    try:
        main()
    except urllib.error.HTTPError as e:
        sys.exit(f"error: {e.code} {e.read().decode()[:500]}")
