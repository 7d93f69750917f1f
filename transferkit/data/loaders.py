"""Loaders whose order and augmentation depend only on (seed, epoch, index), so a run resumed in
the middle of an epoch sees exactly the batches an uninterrupted one would, with any worker count."""

from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import TransferkitError
from .sources import ImageSet
from .transforms import ImageTransform


def mix_seed(*parts: int) -> int:
    """A 32-bit seed from integers (stable across processes, unlike ``hash``)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


class TransformedDataset(Dataset):
    """``(tensor, label)`` pairs; in training the augmentation of item i in epoch e is seeded by
    (seed, e, i).

    The epoch lives in a one-element shared-memory tensor: DataLoader workers hold the copy of
    the dataset made when they started, and persistent ones live across epochs, so an attribute
    set in the main process would not reach them; the shared tensor does (``set_epoch`` is called
    before the epoch's iterator is made, and so before any of its items is asked for)."""

    def __init__(self, images: ImageSet, transform: ImageTransform, seed: int | None = None) -> None:
        self.images, self.transform, self.seed = images, transform, seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.images[index]
        if self.seed is not None:
            self.transform.set_seed(mix_seed(self.seed, self.epoch, index))
        return self.transform(image), label


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of a seeded per-epoch permutation, optionally starting at a batch offset (resume)
    and sharded across ``world_size`` ranks (each rank sees a disjoint slice)."""

    def __init__(
        self, n: int, batch_size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _indices(self) -> list[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=gen).tolist()
        else:
            order = list(range(self.n))
        return order[self.rank :: self.world_size]

    @property
    def batches_per_epoch(self) -> int:
        """The same on every rank (so LR schedules and DDP steps stay in lockstep): enough batches
        of at most ``batch_size`` for the largest shard."""
        largest = -(-self.n // self.world_size)
        return -(-largest // self.batch_size)

    def batches(self) -> list[list[int]]:
        """This rank's shard in ``batches_per_epoch`` near-equal batches: every image once."""
        idx = self._indices()
        count = min(self.batches_per_epoch, len(idx))
        return [chunk.tolist() for chunk in np.array_split(np.asarray(idx, dtype=np.int64), count)] if count else []

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()[self.start_batch :]

    def __len__(self) -> int:
        return max(0, min(self.batches_per_epoch, len(range(self.rank, self.n, self.world_size))) - self.start_batch)


class _Loader(DataLoader):
    """A DataLoader whose workers' transferkit errors reach the caller as they were raised: torch
    raises them again as "Caught DataError in DataLoader worker process 0. Original Traceback..."
    with the worker's traceback inside the message, which would no longer be one line naming the
    image (an image read on demand, e.g. from a tar shard, is found bad only when a worker reads it)."""

    def __iter__(self) -> Iterator[Any]:
        return _WorkerErrors(super().__iter__())


class _WorkerErrors:
    def __init__(self, iterator: Iterator[Any]) -> None:
        self.iterator = iterator

    def __iter__(self) -> "_WorkerErrors":
        return self

    def __next__(self) -> Any:
        try:
            return next(self.iterator)
        except TransferkitError as exc:
            raise worker_error(exc) from None


def worker_error(exc: TransferkitError) -> TransferkitError:
    """The error a DataLoader worker raised, without torch's "Caught ... in DataLoader worker"
    wrapping (the message's last line is the worker's own "module.Error: message")."""
    raw = str(exc.args[0]) if exc.args else ""
    marker = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    if not raw.startswith("Caught ") or marker not in raw:
        return exc
    try:
        return type(exc)(raw.rsplit(marker, 1)[1].strip())
    except TypeError:
        return exc


AUTO_WORKERS_MAX = 8


def loader_workers(setting: int | str, cuda: bool) -> int:
    """``data.num_workers``: a count, or ``"auto"``: on CUDA the cores this process may use (its
    share under torchrun) less one for the training loop, at most ``AUTO_WORKERS_MAX``, so decoding
    and augmentation run beside the GPU's work; on the CPU none, since the model's own threads use
    every core and workers would take them from it (``benchmarks/SCALE.md``)."""
    if setting != "auto":
        return int(setting)
    if not cuda:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(AUTO_WORKERS_MAX, per_process - 1))


def make_loader(
    dataset: Dataset, sampler: EpochBatchSampler, num_workers: int | str = 0, pin_memory: bool = False,
    *, persistent_workers: bool = True,
) -> DataLoader:
    """``num_workers``: a count or ``"auto"`` (``loader_workers``). Workers are persistent by
    default: started once and kept across epochs (a ``TransformedDataset``'s epoch reaches them
    through shared memory), instead of a fresh set of processes, each importing its copy of the
    dataset, at every epoch. ``pin_memory`` (the caller passes True on CUDA, which is also what
    ``"auto"`` asks) lets the host-to-device copy run asynchronously."""
    kwargs: dict[str, Any] = {}
    num_workers = loader_workers(num_workers, cuda=pin_memory)
    if num_workers > 0:
        kwargs.update(persistent_workers=persistent_workers, prefetch_factor=2)
    # its own generator: creating an iterator must not draw from the global RNG, or a resumed run
    # (whose RNG state is restored mid-epoch) would diverge from an uninterrupted one
    generator = torch.Generator().manual_seed(sampler.seed)
    return _Loader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory, generator=generator, **kwargs)
