"""The training order: a fresh shuffle every epoch, the same for the same (seed, epoch), each rank's share of it, and
one augmentation seed per (seed, epoch, image) whatever the rank or the number of processes; and collectives between
ranks, run in two real gloo processes: the first non-finite step is the same on every rank."""

import json

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from csra.distributed import SINGLE, DistContext, EpochSampler, ShardSampler, earliest_on_any_rank

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
