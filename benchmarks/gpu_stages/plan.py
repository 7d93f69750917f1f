"""The parts of the script, in the order they run, and how one group of them runs inside a child
process: each part against the time budget, its figures or its one-line error saved as soon as
it ends, so a group stopped at the budget keeps what it finished."""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .common import Settings, one_line

PartFunction = Callable[[Settings, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Part:
    name: str
    group: str
    title: str
    estimate_s: float  # on an H100 with 16 CPU cores, cold caches: a part with less time left is skipped
    target: str  # "module:function" (imported in the child only: the parent never imports torch)
    key: str | None = None  # the backbone, for the parts that take one
    needs: tuple[str, ...] = ()  # parts whose results (a run directory) it uses, in the same run

    @property
    def rerun(self) -> str:
        """The --only value that runs this part again."""
        return ",".join((*self.needs, self.name))

    def function(self) -> PartFunction:
        import importlib

        module, name = self.target.split(":")
        fn = getattr(importlib.import_module(f"gpu_stages.{module}"), name)
        if self.key is None:
            return fn
        if module == "throughput":
            return lambda settings, done: fn(settings, self.key, compiled=self.group == "2c")
        return lambda settings, done: fn(settings, self.key, done)


# groups in the order they run (the headline figures first, compilation last: it is the slowest)
PARTS: tuple[Part, ...] = (
    Part("2-resnet50", "2", "raw loop, ResNet-50", 25, "throughput:raw_throughput", "resnet50"),
    Part("2-lite0", "2", "raw loop, EfficientNet-Lite0", 20, "throughput:raw_throughput", "lite0"),
    Part("1-flowers", "1", "flowers recipe end to end", 45, "correctness:flowers_run"),
    Part("1-eval-export", "1", "evaluate + export --format onnx", 35, "correctness:evaluate_and_export", needs=("1-flowers",)),
    Part("1-resume", "1", "SIGKILL mid-phase + --resume", 60, "correctness:kill_and_resume", needs=("1-flowers",)),
    Part("1-fp16", "1", "one epoch fp16 + GradScaler", 25, "correctness:fp16_epoch"),
    Part("3-resnet50", "3", "engine, ResNet-50", 50, "engine:engine_throughput", "resnet50"),
    Part("3-lite0", "3", "engine, EfficientNet-Lite0", 45, "engine:engine_throughput", "lite0"),
    Part("2c-resnet50", "2c", "raw loop + torch.compile, ResNet-50", 100, "throughput:raw_throughput", "resnet50"),
    Part("2c-lite0", "2c", "raw loop + torch.compile, EfficientNet-Lite0", 100, "throughput:raw_throughput", "lite0"),
)
GROUPS = tuple(dict.fromkeys(p.group for p in PARTS))
BY_NAME = {p.name: p for p in PARTS}


def select(only: str | None) -> list[Part]:
    """The parts named (or in the groups named) by ``--only a,b``; all of them by default."""
    if not only:
        return list(PARTS)
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    unknown = wanted - set(BY_NAME) - set(GROUPS)
    if unknown:
        raise SystemExit(f"--only: unknown part(s) {', '.join(sorted(unknown))}; parts: {', '.join(BY_NAME)}; groups: {', '.join(GROUPS)}")
    return [p for p in PARTS if p.name in wanted or p.group in wanted]


def save_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def run_group(names: list[str], settings: Settings, deadline: float, results_file: Path, done: dict[str, Any]) -> None:
    """Run these parts in this process (the child of one group), saving after each."""
    from .common import machine

    out: dict[str, Any] = {"machine": machine(), "parts": {}}
    save_json(results_file, out)
    for name in names:
        part = BY_NAME[name]
        left = deadline - time.time()
        if not settings.dry and left < part.estimate_s:
            out["parts"][name] = {"status": "skipped", "error": f"time budget: {left:.0f} s left, the part needs about"
                                  f" {part.estimate_s:.0f} s; run it with --only {part.rerun}"}
            save_json(results_file, out)
            continue
        print(f"[gpu.py] {name}: {part.title}", flush=True)
        started = time.perf_counter()
        try:
            figures = part.function()(settings, {**done, **out["parts"]})
            record = {"status": "ok", **figures}
        except Exception as exc:  # noqa: BLE001 - one part failing must not stop the others
            traceback.print_exc()
            record = {"status": "error", "error": one_line(exc)}
        record["seconds"] = time.perf_counter() - started
        print(f"[gpu.py] {name}: {record['status']} in {record['seconds']:.1f} s"
              + (f": {record['error']}" if record["status"] != "ok" else ""), flush=True)
        out["parts"][name] = record
        save_json(results_file, out)
