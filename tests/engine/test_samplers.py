"""Samplers of the distributed loop: EpochSampler (training) and ShardSampler (evaluation)."""

from __future__ import annotations

import pytest
import torch

from tcm.engine.distributed import EpochSampler, ShardSampler


@pytest.mark.parametrize(
    ("size", "world_size"), [(12, 1), (12, 3), (10, 3), (7, 4), (2, 5), (1, 3), (0, 2)]
)
def test_shards_cover_every_index_once_in_order(size, world_size):
    shards = [list(ShardSampler(size, rank, world_size)) for rank in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == list(range(size))
    for rank, shard in enumerate(shards):
        assert shard == list(range(rank, size, world_size))  # ascending, every world_size-th
        assert len(ShardSampler(size, rank, world_size)) == len(shard)
    # No padding: shard lengths differ by at most one, the first ranks take the remainder.
    lengths = [len(shard) for shard in shards]
    assert lengths == sorted(lengths, reverse=True) and lengths[0] - lengths[-1] <= 1


def test_more_ranks_than_samples_leave_some_ranks_empty():
    assert [list(ShardSampler(2, rank, 4)) for rank in range(4)] == [[0], [1], [], []]


def test_a_single_process_shard_is_the_whole_set():
    sampler = ShardSampler(5)
    assert list(sampler) == list(range(5)) == list(sampler)  # iterable more than once


def test_epoch_order_depends_on_seed_and_epoch_only():
    def order(seed: int, epoch: int) -> list[int]:
        sampler = EpochSampler(20, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    first = order(0, 1)
    assert sorted(first) == list(range(20)) and first != list(range(20))
    torch.manual_seed(123)  # the global generator plays no part
    assert order(0, 1) == first
    assert order(0, 2) != first and order(1, 1) != first


def test_without_shuffling_the_order_is_the_dataset_order():
    sampler = EpochSampler(6, shuffle=False)
    sampler.set_epoch(5)
    assert list(sampler) == list(range(6))
    ranks = [list(EpochSampler(6, shuffle=False, rank=r, world_size=2)) for r in range(2)]
    assert ranks == [[0, 2, 4], [1, 3, 5]]


@pytest.mark.parametrize(("size", "world_size"), [(12, 3), (11, 3), (5, 2)])
def test_epoch_shards_are_disjoint_and_equal_sized(size, world_size):
    samplers = [
        EpochSampler(size, seed=7, rank=r, world_size=world_size) for r in range(world_size)
    ]
    shards = [list(sampler) for sampler in samplers]
    per_rank = size // world_size
    assert all(len(shard) == len(sampler) == per_rank for shard, sampler in zip(shards, samplers))
    merged = [i for shard in shards for i in shard]
    assert len(set(merged)) == len(merged) == per_rank * world_size  # the remainder is left out
    assert set(merged) <= set(range(size))


def test_set_start_skips_this_process_indices_until_the_next_epoch():
    sampler = EpochSampler(10, seed=2, rank=1, world_size=2)
    sampler.set_epoch(3)
    whole = list(sampler)
    sampler.set_start(3)
    assert list(sampler) == whole[3:] and len(sampler) == 2
    sampler.set_start(9)  # past the end: nothing left
    assert list(sampler) == [] and len(sampler) == 0
    sampler.set_start(3)
    sampler.set_epoch(4)  # a new epoch starts from its beginning
    assert len(list(sampler)) == len(sampler) == 5


def test_fewer_samples_than_processes_is_refused():
    with pytest.raises(ValueError, match="3 samples cannot be shared by 4 processes"):
        EpochSampler(3, world_size=4)


@pytest.mark.parametrize(("before", "after"), [(2, 1), (2, 3), (3, 2), (1, 4)])
@pytest.mark.parametrize("seen", [0, 4, 6, 9])
def test_an_epoch_goes_on_after_the_clips_taken_by_another_number_of_processes(before, after, seen):
    # The clips the first run took are the first `seen` of the order; a run with `after`
    # processes takes each of the rest at most once, and all but fewer than `after` of them.
    size = 55
    taken = []
    for rank in range(before):
        sampler = EpochSampler(size, seed=1, rank=rank, world_size=before)
        sampler.set_epoch(2)
        taken += list(sampler)[: seen // before]
    rest = []
    for rank in range(after):
        sampler = EpochSampler(size, seed=1, rank=rank, world_size=after)
        sampler.set_epoch(2)
        sampler.skip_clips(len(taken))
        mine = list(sampler)
        assert len(mine) == len(sampler) == sampler.left_per_rank(len(taken))
        rest += mine
    assert len(set(rest)) == len(rest) and not set(rest) & set(taken)
    epoch = (size // after) * after
    assert epoch - after < len(taken) + len(rest) <= epoch
