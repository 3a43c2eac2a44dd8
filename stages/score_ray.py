"""`csra score` on Ray: the cluster a job runs on (RAY_ADDRESS's, or a local Ray of this machine on 127.0.0.1), how
the job uses it (model actors, decoding tasks: Sizing), and the stream of scored batches — CPU tasks read and decode
the photos, actors that load the model once score the pixels. Ray is imported only here, and only when a job runs."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from csra.deploy.collection import PATH, ModelFile, PixelScorer, decode_photos, score_decoded
from csra.errors import CSRAError, first_line
from stages.common import machine

INSTALL = "pip install -c constraints.txt -e '.[score]'"
DECODE_BATCH = 64  # photos one decoding task reads at a time (fewer: the tasks' own cost shows)
IN_FLIGHT = 256 << 20  # bytes of blocks Ray Data keeps in flight (decoded pixels: 27 kB a photo at 96 px)
SOURCE = "source"  # a photo's absolute path or URI, which the decoding tasks read
ACTOR_CPUS = 0.25  # what a CPU actor reserves in Ray's accounting (it runs torch threads on its share of the cores)


def import_ray() -> Any:
    """Ray (with Ray Data), or the one line that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise CSRAError(f"csra score runs on Ray Data, which is not installed here: {INSTALL}") from None
    return ray


def quiet_ray() -> None:
    """Ray's own INFO and WARNING lines (its start-up, Ray Data's execution plans) stay in its log files."""
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def stderr_aside() -> Iterator[None]:
    """Standard error (the file descriptor, which Ray's C++ parts write to) into a temporary file while Ray runs,
    restored after: the command's own lines stay readable (Ray keeps its logs in its session folder)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


@contextmanager
def ray_cluster(ray: Any) -> Iterator[str]:
    """Ray for this job: the cluster RAY_ADDRESS names, else a local one of this machine's cores on 127.0.0.1;
    yields what it is, in words; shut down at the end."""
    with stderr_aside():
        yield from _ray_cluster(ray)


def _ray_cluster(ray: Any) -> Iterator[str]:
    quiet_ray()
    address = os.environ.get("RAY_ADDRESS")
    passed = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "MLFLOW_S3_"))}  # s3:// photos
    try:
        if address:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                     runtime_env={"env_vars": passed} if passed else None)
        else:
            ray.init(num_cpus=machine()[0], include_dashboard=False, _node_ip_address="127.0.0.1",
                     logging_level=logging.ERROR, log_to_driver=False)
    except Exception as e:  # ConnectionError, RuntimeError, ValueError: Ray's own words
        raise CSRAError(f"cannot start Ray{f' at RAY_ADDRESS={address}' if address else ''}: {first_line(e)}"
                        ) from None
    quiet_ray()
    context = ray.data.DataContext.get_current()
    # the decoded pixels in flight: a bound of their own, not a share of the object store (30% of the memory), so
    # that the decoding tasks, faster than the model, do not pile up pixels however many photos there are
    context.execution_options.resource_limits = ray.data.ExecutionResources(object_store_memory=IN_FLIGHT)
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    try:
        resources = ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
        yield f"{'the cluster at ' + address if address else 'a local Ray'} of {cpus} CPUs" + (
            f" and {gpus} GPUs" if gpus else "")
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class Sizing:
    """How the job uses the cluster: actors that score (each with its CPUs, its torch threads, and a GPU where there
    are GPUs), photos per model call, and the CPUs a decoding task takes."""

    actors: int
    actor_cpus: float
    actor_gpus: float
    threads: int
    batch_size: int
    decode_cpus: float = 1.0


def sizing(resources: dict[str, float], actors: int | None, batch_size: int) -> Sizing:
    """One actor per GPU where the cluster has GPUs; on CPUs alone, one actor per 8 CPUs (at least one). A CPU
    actor reserves a quarter of a CPU in Ray's accounting and runs the model on its share of the cores (torch
    threads); a decoding task (PIL and NumPy, no torch) reserves one CPU, or what the actors leave of a smaller
    cluster. On 2 cores one decoding task runs beside the actor: the photos are decoded while the actor starts and
    loads the model, and keep ahead of it after (three tasks of half a CPU slowed the actor's start and left the job
    15% slower). Actors that reserved whole cores would leave the decoding none on a small machine (two actors of one
    CPU on 2 cores: a deadlock); reservations that differ also keep Ray Data from fusing the decoding into the actor,
    where it would run one photo at a time. resources: the cluster's (ray.cluster_resources())."""
    cpus, gpus = resources.get("CPU", 1), int(resources.get("GPU", 0))
    if gpus:
        return Sizing(actors or gpus, 1.0, 1.0, 0, batch_size, 1.0)
    count = actors or max(1, int(cpus) // 8)
    if count * ACTOR_CPUS > cpus - 0.5:
        most = max(1, int((cpus - 0.5) / ACTOR_CPUS))
        raise CSRAError(f"--actors {count}: the {cpus:g} CPUs of the cluster leave no CPU to read and decode the "
                        f"photos (at most {most} actors of {ACTOR_CPUS} CPU)")
    return Sizing(count, ACTOR_CPUS, 0.0, max(1, int(cpus) // count), batch_size, min(1.0, cpus - count * ACTOR_CPUS))


def decode_batch(batch: dict[str, np.ndarray], img_size: int, max_pixels: int) -> dict[str, np.ndarray]:
    """Ray Data's function for the decoding tasks: a batch of photos → pixels and errors; each is read from its
    absolute path or URI (SOURCE: a worker's working folder is not this process's), its row says it as listed."""
    decoded = decode_photos(batch[SOURCE], img_size, max_pixels)
    decoded[PATH] = batch[PATH]
    return decoded


class Score:
    """Ray Data's actor: loads the model once (from the object store), then scores decoded batches."""

    def __init__(self, model_ref: Any, device: str, threads: int):
        import ray

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.scorer = PixelScorer(ray.get(model_ref[0]), device, min(threads, cores) if threads else None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return score_decoded(self.scorer, batch)


def scored_batches(ray: Any, paths: list[str], model: ModelFile, size: Sizing, max_pixels: int
                   ) -> Iterator[dict[str, np.ndarray]]:
    """The scored rows of paths, as Ray Data streams them (in no fixed order): {path, error, scores}."""
    # blocks of at most DECODE_BATCH photos (blocks of 65 gave the actor a batch of 64, then one of 1)
    data = ray.data.from_items([{PATH: p, SOURCE: p if "://" in p else os.path.abspath(p)} for p in paths],
                               override_num_blocks=max(1, min(-(-len(paths) // DECODE_BATCH), 4096)))
    decoded = data.map_batches(decode_batch, fn_args=(model.img_size, max_pixels), batch_size=DECODE_BATCH,
                               num_cpus=size.decode_cpus)  # tasks, as many at a time as the CPUs left allow
    ref = [ray.put(model)]  # in a list: Ray passes it to the actors as it is, and each reads it once
    scored = decoded.map_batches(Score, fn_constructor_args=(ref, "cuda" if size.actor_gpus else "cpu", size.threads),
                                 batch_size=size.batch_size, concurrency=size.actors, num_cpus=size.actor_cpus,
                                 num_gpus=size.actor_gpus)
    yield from scored.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1)
