"""Generated ImageFolders for ``scale.py``: real JPEG files whose classes a linear probe can tell
apart, written by several processes, and a peak-memory sampler for the stages that read them.

Class ``k`` of ``K`` has its own mean colour and its own low-frequency pattern; every image is
that pattern with a random phase, a random 8 x 8 field of noise upsampled to the image, and JPEG
compression (quality 85). Nothing about it is tuned: it exists so that the pipeline's cost can be
measured on files of a realistic size and format.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def class_name(k: int) -> str:
    return f"c{k:04d}"


def _image(k: int, classes: int, index: int, px: int) -> Image.Image:
    rng = np.random.default_rng([k, index])
    colour_rng = np.random.default_rng([k, 10**6])
    mean = colour_rng.uniform(40, 215, size=3)
    fx, fy = colour_rng.uniform(0.5, 4.0, size=2)
    grid = np.linspace(0, 2 * np.pi, px)
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(fx * grid[None, :] + fy * grid[:, None] + phase)[..., None] * 50.0
    noise = np.asarray(Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((px, px), Image.BILINEAR), dtype=np.float64)
    pixels = np.clip(mean + wave + 0.4 * (noise - 128.0), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _write_range(args: tuple[str, int, int, int, int]) -> int:
    folder, classes, start, stop, px = args
    for i in range(start, stop):
        k = i % classes
        path = Path(folder) / class_name(k) / f"{i:07d}.jpg"
        if not path.exists():
            _image(k, classes, i, px).save(path, quality=85)
    return stop - start


def write_folder(root: Path, n_train: int, n_test: int, classes: int, px: int = 160, workers: int | None = None) -> Path:
    """``root/train/<class>/*.jpg`` and ``root/test/<class>/*.jpg`` (classes balanced); files
    already there are kept, so a larger size reuses a smaller one's work only in its own root."""
    workers = workers or os.cpu_count() or 1
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 10**7 // 2)):
        for k in range(classes):
            (root / split / class_name(k)).mkdir(parents=True, exist_ok=True)
        chunk = max(1, n // (workers * 8))
        jobs = [(str(root / split), classes, offset + s, offset + min(n, s + chunk), px) for s in range(0, n, chunk)]
        with ProcessPoolExecutor(workers) as pool:
            sum(pool.map(_write_range, jobs))
    return root


def folder_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*.jpg"))


def _rss_of(pid: int) -> int:
    """Resident bytes of a process and its children (DataLoader workers), from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


class PeakMemory:
    """The largest resident size of this process tree while a stage runs (sampled every 20 ms)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.peak, self.start = interval, 0, 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        self.start = self.peak = _rss_of(os.getpid())
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_of(os.getpid()))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = max(self.peak, _rss_of(os.getpid()))


class Stages:
    """Wall time and peak memory of named stages, in order."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def run(self, name: str, fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201 - a timing wrapper
        with PeakMemory() as memory:
            started = time.perf_counter()
            value = fn(*args, **kwargs)
            seconds = time.perf_counter() - started
        self.records.append({"stage": name, "seconds": round(seconds, 3), "peak_rss_mb": round(memory.peak / 2**20, 1),
                             "start_rss_mb": round(memory.start / 2**20, 1)})
        print(f"  {name}: {seconds:.1f} s, peak {memory.peak / 2**20:.0f} MB", flush=True)
        return value
