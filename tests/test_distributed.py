"""The training order: a fresh shuffle every epoch, the same for the same (seed, epoch), each rank's share of it, and
one augmentation seed per (seed, epoch, image) whatever the rank or the number of processes; and collectives between
ranks, run once in two real gloo processes: the first non-finite step is the same on every rank, and every rank
takes rank 0's decision, or stops with its refusal."""

import json
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from csra.distributed import (
    SINGLE,
    DistContext,
    EpochSampler,
    ShardSampler,
    broadcast_object,
    earliest_on_any_rank,
    from_main,
)
from csra.errors import CSRAError

SIZE = 20


def epoch(sampler, number):
    sampler.set_epoch(number)
    return list(sampler)


def order(keys):
    return [index for _, index in keys]


def test_each_epoch_is_a_new_permutation_of_every_item():
    sampler = EpochSampler(SIZE, seed=0, ctx=SINGLE)
    orders = [order(epoch(sampler, e)) for e in range(4)]
    assert all(sorted(o) == list(range(SIZE)) for o in orders)
    assert len({tuple(o) for o in orders}) == 4  # a different shuffle in every epoch
    assert list(range(SIZE)) not in orders  # shuffled, not in file order


def test_the_same_seed_and_epoch_give_the_same_order_and_seeds():
    first = EpochSampler(SIZE, seed=3, ctx=SINGLE)
    again = EpochSampler(SIZE, seed=3, ctx=SINGLE)
    epoch(again, 5)  # a sampler that went through other epochs first: only (seed, epoch) matters
    assert epoch(first, 2) == epoch(again, 2)
    assert order(epoch(EpochSampler(SIZE, seed=4, ctx=SINGLE), 2)) != order(epoch(first, 2))


def test_augmentation_seed_depends_on_seed_epoch_and_image_only():
    whole = {index: seed for seed, index in epoch(EpochSampler(SIZE, seed=0, ctx=SINGLE), 1)}
    assert len(set(whole.values())) == SIZE  # one seed per image
    # two processes: each takes a disjoint share of the epoch, and an image keeps its seed on any rank
    shares = [epoch(EpochSampler(SIZE, seed=0, ctx=DistContext(rank, 2, rank)), 1) for rank in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == SIZE // 2
    assert sorted(order(shares[0] + shares[1])) == list(range(SIZE))
    assert {index: seed for seed, index in shares[0] + shares[1]} == whole
    # another epoch or another train.seed: other seeds for the same image
    other_epoch = {index: seed for seed, index in epoch(EpochSampler(SIZE, seed=0, ctx=SINGLE), 2)}
    other_seed = {index: seed for seed, index in epoch(EpochSampler(SIZE, seed=1, ctx=SINGLE), 1)}
    assert all(other_epoch[i] != whole[i] and other_seed[i] != whole[i] for i in range(SIZE))


def test_evaluation_shards_take_every_item_once_in_order():
    shards = [list(ShardSampler(7, DistContext(rank, 3, rank))) for rank in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]


STEPS = [[None, 7, 3, None], [None, None, 5, 2]]  # per rank: its first bad step in each interval, or None
SPAWN_TIMEOUT_S = 120  # a collective that waits forever fails the test instead of hanging it


def refusal(rank, decide, ctx):
    """The error from_main(decide) stops this rank with: (its type, its message)."""
    try:
        from_main(decide, ctx)
    except Exception as e:
        return type(e).__name__, str(e)
    return None


def collectives(rank, rendezvous, out):
    """One of two gloo processes: the collectives' results on this rank, written to out/<rank>.json."""
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    ctx, asked = DistContext(rank, 2, rank), []
    found = [earliest_on_any_rank(step, ctx, torch.device("cpu")) for step in STEPS[rank]]
    state = broadcast_object({"epoch": 1, "model": torch.full((2,), float(rank))} if rank == 0 else "ignored", ctx)

    def decide():
        asked.append(rank)
        return f"rank {rank}'s answer"

    def refuses():
        asked.append(rank)
        raise CSRAError("train_state.pt: no interrupted run to resume")

    def fails():
        raise ValueError("bad\nsecond line")

    results = {"earliest": found, "state": [state["epoch"], state["model"].tolist()], "decided": from_main(decide, ctx),
               "refused": refusal(rank, refuses, ctx), "failed": refusal(rank, fails, ctx),
               "after": earliest_on_any_rank(rank, ctx, torch.device("cpu")), "asked": asked}
    dist.destroy_process_group()
    (out / f"{rank}.json").write_text(json.dumps(results))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """What each of two gloo processes got from the collectives (collectives), spawned once for this file."""
    folder = tmp_path_factory.mktemp("two-ranks")
    context = mp.start_processes(collectives, args=(folder / "rendezvous", folder), nprocs=2, join=False)
    deadline = time.monotonic() + SPAWN_TIMEOUT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"two gloo processes still running after {SPAWN_TIMEOUT_S} s")
    return [json.loads((folder / f"{rank}.json").read_text()) for rank in (0, 1)]


def test_every_rank_gets_the_earliest_step_of_any_rank(two_ranks):
    expected = [None, 7, 3, 2]
    assert [ranks["earliest"] for ranks in two_ranks] == [expected, expected]
    assert earliest_on_any_rank(4, DistContext(), torch.device("cpu")) == 4  # one process: its own


def test_every_rank_takes_rank_0s_decision_or_stops_with_its_refusal(two_ranks):
    """from_main: rank 0 alone decides (reads its files) and every rank gets its answer; when rank 0 refuses, it stops
    with its own error and every other rank with a one-line CSRAError quoting it, and none waits for the others."""
    rank0, rank1 = two_ranks
    assert rank0["state"] == rank1["state"] == [1, [0.0, 0.0]]  # tensors too: rank 0's
    assert rank0["decided"] == rank1["decided"] == "rank 0's answer"
    assert rank0["asked"] == [0, 0] and rank1["asked"] == []  # decide ran on rank 0 alone
    assert rank0["refused"] == ["CSRAError", "train_state.pt: no interrupted run to resume"]
    assert rank1["refused"] == ["CSRAError", "rank 0 stopped: train_state.pt: no interrupted run to resume"]
    assert rank0["failed"] == ["ValueError", "bad\nsecond line"]
    assert rank1["failed"] == ["CSRAError", "rank 0 stopped: ValueError: bad"]
    assert rank0["after"] == rank1["after"] == 0  # the group still works after a refusal: no rank was left behind
    assert from_main(lambda: "mine", SINGLE) == "mine" and broadcast_object(3, SINGLE) == 3  # one process
