"""Collectives between ranks, run in two real gloo processes: the first non-finite step is the same on every rank."""

import json

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from csra.distributed import DistContext, earliest_on_any_rank

STEPS = [[None, 7, 3, None], [None, None, 5, 2]]  # per rank: its first bad step in each interval, or None


def earliest_in_each_interval(rank, rendezvous, out):
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    ctx = DistContext(rank, 2, rank)
    found = [earliest_on_any_rank(step, ctx, torch.device("cpu")) for step in STEPS[rank]]
    dist.destroy_process_group()
    (out / f"{rank}.json").write_text(json.dumps(found))


def test_every_rank_gets_the_earliest_step_of_any_rank(tmp_path):
    mp.spawn(earliest_in_each_interval, args=(tmp_path / "rendezvous", tmp_path), nprocs=2)
    expected = [None, 7, 3, 2]
    assert [json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1)] == [expected, expected]
    assert earliest_on_any_rank(4, DistContext(), torch.device("cpu")) == 4  # one process: its own
