"""Batching: seeded permutations, every image once per epoch, equal step counts across ranks."""

from __future__ import annotations

import os

import pytest

from transferkit.data.loaders import EpochBatchSampler, loader_workers
from transferkit.errors import RecipeError
from transferkit.recipe_loading import load_recipe


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


class _Images:
    """Twenty one-pixel images with labels 0..19."""

    targets = list(range(20))

    def __len__(self) -> int:
        return 20

    def __getitem__(self, index: int):
        import numpy as np

        return np.zeros((1, 1, 3), dtype=np.uint8), index


class _SeedEcho:
    """A transform whose output is the seed it was given and the process that ran it."""

    seed = -1

    def set_seed(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, image):
        import os

        import torch

        return torch.tensor([self.seed, os.getpid()], dtype=torch.int64)


def _epochs(workers: int, plan: list[tuple[int, int, int | None]]):
    """(epoch, start batch, batches read or None for all) in turn through one loader: the seeds
    of each batch and the worker processes that made them."""
    from transferkit.data.loaders import TransformedDataset, make_loader

    dataset = TransformedDataset(_Images(), _SeedEcho(), seed=7)
    sampler = EpochBatchSampler(len(dataset), 6, shuffle=True, seed=7)
    loader = make_loader(dataset, sampler, num_workers=workers)
    assert loader.persistent_workers == (workers > 0)
    seeds, pids = [], set()
    for epoch, start, count in plan:
        sampler.set_epoch(epoch, start)
        dataset.set_epoch(epoch)
        for i, (out, labels) in enumerate(loader):
            if count is not None and i == count:
                break
            seeds.append((epoch, out[:, 0].tolist(), labels.tolist()))
            pids.update(out[:, 1].tolist())
    return seeds, pids


def test_persistent_workers_see_every_epochs_seeds():
    """Workers started once keep serving the epochs that follow with those epochs' augmentation
    seeds, as a loader without workers does: after a full epoch, a resumed one and a cut one."""
    import os

    plan = [(0, 0, None), (1, 0, 2), (2, 1, None), (3, 0, None)]
    expected, main = _epochs(0, plan)
    got, pids = _epochs(2, plan)
    assert got == expected
    assert main == {os.getpid()} and os.getpid() not in pids and len(pids) <= 2  # the same two workers throughout


class _BadImage(_Images):
    def __getitem__(self, index: int):
        from transferkit.errors import DataError

        if index == 13:
            raise DataError("shard.tar:000013.png: not an image; fix or remove this sample from the shard")
        return super().__getitem__(index)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_error_raised_in_a_worker_reaches_the_caller_as_the_one_line_it_was(workers):
    from transferkit.data.loaders import make_loader
    from transferkit.errors import DataError

    loader = make_loader(_BadImage(), EpochBatchSampler(20, 4, shuffle=False), num_workers=workers)
    with pytest.raises(DataError) as caught:
        list(loader)
    assert caught.value.args == ("shard.tar:000013.png: not an image; fix or remove this sample from the shard",)


def test_auto_workers_are_none_on_the_cpu_and_the_processs_cores_less_one_on_cuda(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert loader_workers("auto", cuda=False) == 0
    assert loader_workers("auto", cuda=True) == 8  # 15 cores free, at most 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: 4 processes share the 16 cores
    assert loader_workers("auto", cuda=True) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert loader_workers("auto", cuda=True) == 1
    assert loader_workers(5, cuda=False) == 5 and loader_workers(0, cuda=True) == 0


def test_auto_is_the_default_and_other_words_are_one_line(tiny_recipe):
    assert load_recipe(tiny_recipe).data.num_workers == "auto"
    with pytest.raises(RecipeError, match="data.num_workers"):
        load_recipe(tiny_recipe, ["data.num_workers=many"])
