"""`csra score` as its users rely on it: a job on a Ray cluster (RAY_ADDRESS) of photos (bad ones among them) in an
S3-compatible server, killed, the previous output kept until the new one is whole, resumed; the scores those of the
in-process API; and the bad set-ups, each one `error:` line (without Ray Data installed too). A folder scored on a
local Ray, against `csra demo`: tests/stages/test_score_docs.py, as docs/scoring.md shows it.

Ray runs in network namespaces of its own (`unshare -n`, loopback up: Ray looks for an outside address otherwise),
its temp folder a short one under /tmp (its socket paths have a length limit), every process it started killed at
the end; the cluster and the S3 server of the module run in one namespace, which each job enters (nsenter)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
from helpers import (
    BIN,
    REPO,
    assert_one_line_error,
    edit_params,
    free_port,
    run,
)
from photos import ray_processes, write_bad_photos, write_photos

from csra.errors import CSRAError

CLASSES = ["circle", "square", "triangle"]  # the tiny checkpoint's
# Ray's token authentication would write a token into ~/.ray/ (outside the test's folders): off, for every process
RAY_ENV = {"RAY_AUTH_MODE": "disabled"}
MAX_PIXELS = 20_000  # export.max_pixels in these tests: a 200 x 150 photo is over it


def table(out: Path) -> dict[str, dict]:
    """{photo path: its row} of a Parquet output."""
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == len({row["path"] for row in rows}), "a photo twice"
    return {row["path"]: row for row in rows}


def kill_tree(process: subprocess.Popen) -> None:
    """Kill a process, its process group and every process below it."""
    try:
        below = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        below = []
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in below:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=30)
    psutil.wait_procs(below, timeout=30)


@pytest.fixture
def score_params(tiny_params) -> Path:
    edit_params(tiny_params, **{"export.max_pixels": MAX_PIXELS})
    return tiny_params


# --- a cluster ------------------------------------------------------------------------------------------------
S3_KEYS = {"AWS_ACCESS_KEY_ID": "score-key", "AWS_SECRET_ACCESS_KEY": "score-secret",
           "AWS_DEFAULT_REGION": "us-east-1"}
READY = """
import sys, time, boto3
client = boto3.client("s3", endpoint_url=sys.argv[1])
deadline = time.monotonic() + 120
while True:
    try:
        client.head_bucket(Bucket="photos")
        break
    except Exception:
        assert time.monotonic() < deadline, "no S3 server"
        time.sleep(0.2)
for path in sys.argv[2:]:
    client.upload_file(path, "photos", "collection/" + path.rsplit("/", 1)[1])
"""


class Namespace:
    """A loopback-only network namespace held by a Ray head (`ray start --head --block`), with an S3 server."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        command = (f"ip link set lo up && exec {BIN / 'ray'} start --head --block --port {self.port} --num-cpus 2 "
                   f"--node-ip-address 127.0.0.1 --include-dashboard false --disable-usage-stats "
                   f"--temp-dir {self.ray_tmp}")
        with (folder / "ray.log").open("w") as log:
            self.head = subprocess.Popen(["unshare", "-n", "sh", "-c", command], stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True,
                                         env={**os.environ, **RAY_ENV, "RAY_TMPDIR": str(self.ray_tmp)})
        self.processes = [self.head]

    def wait(self) -> None:
        """Until the head answers `ray status`."""
        deadline = time.monotonic() + 120
        while subprocess.run(self.enter(str(BIN / "ray"), "status", "--address", f"127.0.0.1:{self.port}"),
                             capture_output=True, timeout=60, env={**os.environ, **RAY_ENV}).returncode != 0:
            assert self.head.poll() is None, (self.folder / "ray.log").read_text()
            assert time.monotonic() < deadline, (self.folder / "ray.log").read_text()
            time.sleep(0.5)

    def enter(self, *command: str) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.head.pid}/ns/net", *command]

    def start_s3(self) -> str:
        ports = {name: free_port() for name in ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
                                                "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc",
                                                "admin.port", "admin.port.grpc")}
        (self.folder / "s3").mkdir()
        weed = [str(BIN / "weed"), f"-logdir={self.folder}", "mini", f"-dir={self.folder / 's3'}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-bucket=photos",
                *(f"-{name}={port}" for name, port in ports.items())]
        with (self.folder / "weed.log").open("w") as log:
            self.processes.append(subprocess.Popen(self.enter(*weed), stdout=log, stderr=subprocess.STDOUT,
                                                   cwd=self.folder, start_new_session=True,
                                                   env={**os.environ, **S3_KEYS}))
        self.ports = ports
        return f"http://127.0.0.1:{ports['s3.port']}"

    def job(self, *args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
        """`csra score *args` on the cluster, in a session of its own."""
        return subprocess.Popen(self.enter(str(BIN / "csra"), "score", *args), cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                env={**os.environ, **RAY_ENV, "RAY_ADDRESS": f"127.0.0.1:{self.port}",
                                     **(env or {})})

    def close(self) -> None:
        for process in self.processes:
            kill_tree(process)
        for process in ray_processes(self.ray_tmp):
            process.kill()
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
        for port in getattr(self, "ports", {}).values():  # weed's local sockets, named after their ports
            for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):  # /tmp whatever TMPDIR says
                leftover.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    namespace = Namespace(tmp_path_factory.mktemp("cluster"))
    try:
        namespace.wait()
        yield namespace
    finally:
        namespace.close()


def test_photos_in_s3_on_a_ray_cluster_a_killed_job_keeps_the_previous_output_and_a_rerun_resumes(
        cluster, score_params, tiny_checkpoint, tmp_path):
    photos = write_photos(tmp_path / "photos", 160)
    bad = write_bad_photos(tmp_path / "photos", photos[0], MAX_PIXELS)
    endpoint = cluster.start_s3()
    files = sorted(str(p) for p in (tmp_path / "photos").iterdir())
    subprocess.run(cluster.enter(sys.executable, "-c", READY, endpoint, *files), check=True, timeout=180,
                   env={**os.environ, **S3_KEYS})
    previous = tmp_path / "scores"
    previous.mkdir()
    (previous / "part-000000.parquet").write_bytes(b"the previous complete output")
    args = ("s3://photos/collection/", "--out", "scores", "--checkpoint", str(tiny_checkpoint), "--params",
            str(score_params), "--rows-per-file", "8", "--batch-size", "8")
    s3 = {**S3_KEYS, "AWS_ENDPOINT_URL": endpoint}
    # killed once two part files are written
    job = cluster.job(*args, cwd=tmp_path, env=s3)
    partial, deadline = tmp_path / "scores.partial", time.monotonic() + 180
    while not (partial / "part-000001.parquet").exists():
        assert job.poll() is None, job.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    kill_tree(job)
    assert [p.name for p in previous.iterdir()] == ["part-000000.parquet"]  # untouched
    assert (previous / "part-000000.parquet").read_bytes() == b"the previous complete output"
    kept = {path for part in partial.glob("part-*.parquet") for path in pq.read_table(part)["path"].to_pylist()}
    # whole part files only; a part file the kill caught being written stays under a temporary name
    assert len(kept) >= 16 and all(p.name.endswith(".tmp") for p in partial.glob(".*"))
    # run again: what is written is kept, the rest scored, the whole swapped in
    rerun = cluster.job(*args, cwd=tmp_path, env=s3)
    said, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, said
    assert f"scored {163 - len(kept)} photos" in said and f"resumed: {len(kept)} photos" in said, said
    assert f"the cluster at 127.0.0.1:{cluster.port}" in said and "errors: 3 photos" in said, said
    rows = table(previous)
    assert sorted(rows) == sorted(f"s3://photos/collection/{Path(f).name}" for f in files) and not partial.exists()
    assert not list(previous.glob(".*"))  # the resumed job removed the killed one's unfinished part file
    for name, needle in bad.items():
        assert needle in rows[f"s3://photos/collection/{name}"]["error"]
    import csra

    local = csra.load_model(tiny_checkpoint, device="cpu").score(photos[::9], batch_size=4)
    for prediction in local:
        row = rows[f"s3://photos/collection/{prediction.image.name}"]
        assert row["error"] is None
        assert np.allclose([row[c] for c in CLASSES], [prediction.scores[c] for c in CLASSES], atol=1e-5)


# --- bad set-ups: one line each, before any Ray or output ----------------------------------------------------------
def test_bad_set_ups_are_one_line_each(score_params, tiny_checkpoint, tmp_path):
    write_photos(tmp_path / "photos", 2)
    (tmp_path / "empty").mkdir()
    assert_one_line_error(*run("score", "photos", "--out", "s", "--model-uri", "models:/nothing@champion", "--params",
                               score_params), "models:/nothing@champion: no such registered model version")
    assert_one_line_error(*run("score", "empty", "--out", "s", "--checkpoint", tiny_checkpoint, "--params",
                               score_params), "empty: no photos in it")
    assert_one_line_error(*run("score", "nowhere/*.jpg", "--out", "s", "--checkpoint", tiny_checkpoint, "--params",
                               score_params), "nowhere/*.jpg: no photos in it")
    assert_one_line_error(*run("score", "missing", "--out", "s", "--checkpoint", tiny_checkpoint, "--params",
                               score_params), "missing: no such folder, file, glob match or s3:// prefix")
    assert_one_line_error(*run("score", "photos", "--out", "s", "--checkpoint", tmp_path / "none.pt", "--params",
                               score_params), "none.pt")
    (tmp_path / "a_file").write_text("")
    assert_one_line_error(*run("score", "photos", "--out", "a_file", "--checkpoint", tiny_checkpoint, "--params",
                               score_params), "a_file: a file; the output is a folder of Parquet files")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(read_only)],
                      capture_output=True).returncode == 0:
        try:
            assert_one_line_error(*run("score", "photos", "--out", read_only / "s", "--checkpoint", tiny_checkpoint,
                                       "--params", score_params), f"read-only file system: {read_only / 's'}")
        finally:
            subprocess.run(["umount", str(read_only)], check=True)
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.partial").exists()
    # an unfinished output of another job is not mixed into
    other = tmp_path / "s.partial"
    other.mkdir()
    (other / "_job.json").write_text(json.dumps({"model": "md5:0", "photos": "elsewhere", "classes": CLASSES,
                                                 "thresholds": [0.5] * 3}))
    assert_one_line_error(*run("score", "photos", "--out", "s", "--checkpoint", tiny_checkpoint, "--params",
                               score_params), "s.partial: the unfinished output of another job (model md5:0, "
                                              "photos elsewhere)")


def test_without_ray_data_the_command_says_what_to_install(score_params, tiny_checkpoint, tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "ray.py").write_text("raise ImportError('No module named ray (hidden by the test)')\n")
    write_photos(tmp_path / "photos", 1)
    done = subprocess.run([str(BIN / "csra"), "score", "photos", "--out", "s", "--checkpoint", str(tiny_checkpoint),
                           "--params", str(score_params)], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(shadow)}, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "error: csra score runs on Ray Data, which is not installed here: pip install -c constraints.txt -e "
        "'.[score]'"], done.stderr
    assert not (tmp_path / "s.partial").exists()


# --- how a job uses the cluster ------------------------------------------------------------------------------------
@pytest.mark.parametrize("resources, actors, expected", [
    ({"CPU": 2.0}, None, (1, 0.25, 0.0, 2, 1.0)),  # this machine: one actor on both cores, one decoding task
    ({"CPU": 1.0}, None, (1, 0.25, 0.0, 1, 0.75)),  # what the actor leaves: a task still fits beside it
    ({"CPU": 16.0}, None, (2, 0.25, 0.0, 8, 1.0)),  # one actor per 8 CPUs, each on its 8 cores
    ({"CPU": 16.0, "GPU": 2.0}, None, (2, 1.0, 1.0, 0, 1.0)),  # one actor per GPU
    ({"CPU": 4.0}, 3, (3, 0.25, 0.0, 1, 1.0)),
])
def test_sizing_leaves_the_decoding_at_least_half_a_cpu(resources, actors, expected):
    from stages.score_ray import sizing

    size = sizing(resources, actors, 64)
    assert (size.actors, size.actor_cpus, size.actor_gpus, size.threads, size.decode_cpus) == expected
    assert size.actors * size.actor_cpus + size.decode_cpus <= resources["CPU"]  # never a deadlock


def test_too_many_actors_for_the_cpus_are_refused():
    from stages.score_ray import sizing

    with pytest.raises(CSRAError, match=r"--actors 7: the 2 CPUs of the cluster leave no CPU to read and decode the "
                                        r"photos \(at most 6 actors of 0.25 CPU\)"):
        sizing({"CPU": 2.0}, 7, 64)


def test_the_decoding_tasks_import_no_torch(tmp_path):
    """A decoding task (stages.score_ray.decode_batch: a photo read, decoded, resized) leaves torch out: a Ray worker
    that only decodes starts in a fraction of a second, beside the actor that loads the model."""
    [photo] = write_photos(tmp_path / "photos", 1)
    code = ("import sys, numpy as np; from stages.score_ray import PATH, SOURCE, decode_batch; "
            f"out = decode_batch({{PATH: np.array(['p']), SOURCE: np.array([{str(photo)!r}])}}, 32, 10**6); "
            "print(out['pixels'].shape, list(out['error']), "
            "sorted(m for m in ('torch', 'torchvision', 'mlflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.stdout.strip() == "(1, 3, 32, 32) [''] []", done.stderr
