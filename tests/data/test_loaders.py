"""Batching: seeded permutations, every image once per epoch, equal step counts across ranks."""

from __future__ import annotations

import pytest

from transferkit.data.loaders import EpochBatchSampler


@pytest.mark.parametrize("n,batch,world", [(27, 8, 1), (27, 8, 2), (17, 8, 2), (100, 7, 3), (5, 8, 2)])
def test_every_image_once_per_epoch_across_ranks_with_equal_step_counts(n, batch, world):
    samplers = [EpochBatchSampler(n, batch, shuffle=True, seed=3, rank=r, world_size=world) for r in range(world)]
    for epoch in range(3):
        seen = []
        for s in samplers:
            s.set_epoch(epoch)
            batches = list(s)
            assert all(0 < len(b) <= batch for b in batches)
            seen += [i for b in batches for i in b]
        assert sorted(seen) == list(range(n))
        assert len({len(list(s)) for s in samplers}) == 1  # lockstep


def test_seeded_order_and_resume_offset():
    a = EpochBatchSampler(20, 6, shuffle=True, seed=1)
    b = EpochBatchSampler(20, 6, shuffle=True, seed=1)
    a.set_epoch(4)
    b.set_epoch(4, start_batch=2)
    assert list(a)[2:] == list(b) and len(b) == len(a) - 2
    a.set_epoch(5)
    assert list(a) != list(b)
