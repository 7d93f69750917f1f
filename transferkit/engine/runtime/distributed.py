"""More than one process: ``torchrun --nproc_per_node N -m transferkit finetune RECIPE``.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK and the rendezvous; we join the process group (NCCL
on CUDA, gloo on the CPU), shard every epoch across ranks, reduce metrics, and let rank 0 alone
write the run directory.
"""

from __future__ import annotations

import atexit
import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def leave_at_exit(self) -> None:
        """Every rank is done: leave the process group when the process exits. Left to the
        interpreter's teardown, gloo's threads can abort a finished process (SIGABRT, exit code -6:
        torchrun reports the run failed, and the other nodes wait out their exit barrier). At exit,
        not now: another run in this process (a sweep) goes on in the same group. Not after an
        error: there a teardown could wait on collectives the other ranks never join (NCCL)."""
        if self.enabled:
            _leave_at_exit()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, *values: float) -> list[float]:
        """Elementwise sums over ranks."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather_rows(self, array: np.ndarray, n_total: int) -> np.ndarray:
        """Reassemble rows sharded as ``rank::world_size`` into their original order."""
        if not self.enabled:
            return array
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, array)
        out = np.empty((n_total, *array.shape[1:]), dtype=array.dtype)
        for rank, part in enumerate(parts):
            out[rank::self.world_size] = part
        return out


def init_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun describes in the environment (no-op for one process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistContext(rank, world_size, local_rank)


@functools.cache  # registered once, however many runs end in this process
def _leave_at_exit() -> None:
    atexit.register(_leave)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
