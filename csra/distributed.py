"""Data parallelism under torchrun: the process group, per-rank samplers, gathering results from every rank, and
giving every rank process 0's decisions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

from csra.errors import CSRAError, first_line

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: rank, world size and local rank as torchrun sets them (1 process: 0, 1, 0)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()  # one process, no torchrun


def init_distributed(ctx: DistContext, device_type: str) -> None:
    """Join the process group (NCCL on GPUs, gloo on CPUs); rendezvous from torchrun's MASTER_ADDR/PORT."""
    if not ctx.enabled or dist.is_initialized():
        return
    if device_type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=ctx.rank, world_size=ctx.world_size)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.barrier()


def shutdown(ctx: DistContext, *, wait: bool = True) -> None:
    """Leave the process group, once every rank is here (wait). A rank that stops on an error or a signal leaves
    without waiting: the other ranks may be inside a collective it will never join (a barrier here would wait for
    them while they wait for it); its leaving ends their collective with an error instead."""
    if ctx.enabled and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_object(value: T, ctx: DistContext) -> T:
    """Process 0's value (any picklable object) on every rank, over the process group (init_distributed); the
    value given on the other ranks is ignored."""
    if not ctx.enabled:
        return value
    box = [value if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def from_main(decide: Callable[[], T], ctx: DistContext) -> T:
    """decide() run on process 0 alone, its result given to every rank (e.g. what process 0's disk holds: the
    other machines' files are never consulted). If it raises, every rank stops rather than waits: process 0 with
    its error, the others with a CSRAError that quotes it."""
    if not ctx.enabled:
        return decide()
    outcome: tuple[bool, object] = (True, None)
    error: Exception | None = None
    if ctx.is_main:
        try:
            outcome = (True, decide())
        except Exception as e:  # any error: the other ranks wait for this broadcast
            error, outcome = e, (False, first_line(e, typed=not isinstance(e, CSRAError)))
    done, value = broadcast_object(outcome, ctx)
    if error is not None:
        raise error
    if not done:
        raise CSRAError(f"rank 0 stopped: {value}")
    return value  # type: ignore[return-value]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one image in one epoch: the same whatever the workers, ranks or resumes."""
    return (seed * 1_000_003 + epoch * 7_919 + index) % (2**63 - 1)


class EpochSampler(Sampler):
    """This rank's share of a shuffled epoch (DistributedSampler: a permutation per (seed, epoch), padded to a
    multiple of the world size), each index paired with its augmentation seed."""

    def __init__(self, size: int, seed: int, ctx: DistContext):
        self.seed = seed
        self.epoch = 0
        self.inner = DistributedSampler(range(size), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                        seed=seed)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((sample_seed(self.seed, self.epoch, i), i) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class ShardSampler(Sampler):
    """Evaluation: rank r takes items r, r + W, r + 2W, … — every item exactly once over the ranks, no padding."""

    def __init__(self, size: int, ctx: DistContext):
        self.indices = list(range(ctx.rank, size, ctx.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def gather_rows(rows: np.ndarray, indices: list[int], ctx: DistContext) -> tuple[np.ndarray, np.ndarray]:
    """Every rank's rows (one per item index), gathered on every rank and put in item-index order:
    (indices, rows)."""
    parts = [(indices, rows)]
    if ctx.enabled:
        parts = [None] * ctx.world_size
        dist.all_gather_object(parts, (indices, rows))
    all_indices = np.concatenate([np.asarray(i, dtype=np.int64) for i, _ in parts])
    all_rows = np.concatenate([r for _, r in parts])
    order = np.argsort(all_indices, kind="stable")
    if len(np.unique(all_indices)) != len(all_indices):
        raise CSRAError(f"gathered evaluation rows from {ctx.world_size} ranks hold an item twice")
    return all_indices[order], all_rows[order]


def gather_indices(indices: list[int], ctx: DistContext) -> list[int]:
    """Every rank's item indices (e.g. of the images it skipped), gathered on every rank: sorted, each once."""
    parts = [indices]
    if ctx.enabled:
        parts = [None] * ctx.world_size
        dist.all_gather_object(parts, indices)
    return sorted({index for part in parts for index in part})


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Give every rank process 0's buffers (batch-norm statistics drift apart after the last training step), so
    that all ranks validate, and process 0 saves, the same model."""
    if ctx.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def all_sum(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    """Element-wise sum over ranks (e.g. loss totals and image counts)."""
    if not ctx.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_rank(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """True on every rank when flag is true on one (to stop all ranks together)."""
    if not ctx.enabled:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def earliest_on_any_rank(step: int | None, ctx: DistContext, device: torch.device) -> int | None:
    """The smallest of the ranks' steps (None: none on that rank), the same on every rank; None when no rank has
    one (e.g. the first step with a non-finite loss, to stop all ranks together and name it)."""
    if not ctx.enabled:
        return step
    none = torch.iinfo(torch.int64).max
    tensor = torch.tensor([none if step is None else step], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    earliest = int(tensor.item())
    return None if earliest == none else earliest
