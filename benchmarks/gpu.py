"""One prepared GPU run: proves transferkit's CUDA path and measures it against the card's limit.

    python benchmarks/gpu.py [--dry] [--out FILE.md] [--budget-s 330] [--only PARTS] [--previous FILE.json]

1. Correctness on CUDA: recipes/flowers.toml end to end on ../shared/data/flowers12 at 224 px
   (bf16 autocast + channels_last), test accuracy beside a CPU run's; one epoch fp16 + GradScaler;
   SIGKILL mid-phase then --resume; `evaluate` and `export --format onnx` of the run.
2. Raw throughput: ResNet-50 (our plugin) and EfficientNet-Lite0, 224 px, batch 256, training and
   feature-extraction images/s, eager and torch.compile, peak GPU memory.
3. The engine: both backbones through `transferkit finetune` on flowers12 replicated, as a ratio
   to stage 2, and the input pipeline alone, so the bottleneck is named.
4. The limit: each training figure as a fraction of the card's dense bf16 peak.

Each group of parts runs in its own child process against one time budget (a part with too little
time left is skipped and says how to run it alone); the Markdown (--out) and its JSON beside it
are rewritten after every group, so a run stopped at the device's time limit keeps what finished.
--dry runs every stage at toy sizes on the CPU (the test suite does this); its figures are labelled
as not measurements. --previous FILE.json merges an earlier run's parts that this one does not run.
--make-cpu-reference runs stage 1's recipe on the CPU and writes the figure stage 1 compares with.
How to run it on a lent GPU: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpu_stages.common import ROOT, Settings
from gpu_stages.plan import BY_NAME, GROUPS, run_group, save_json, select
from gpu_stages.report import render

HERE = Path(__file__).resolve().parent
CPU_REFERENCE = "benchmarks/flowers224-cpu.json"  # written by --make-cpu-reference


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", help="every stage at toy sizes on the CPU (not a measurement)")
    parser.add_argument("--out", help="the Markdown summary, its JSON beside it (default benchmarks/RESULTS-gpu.md;"
                        " with --dry runs/gpu-dry/RESULTS-gpu.md, so a dry run never overwrites GPU figures)")
    parser.add_argument("--data", default="../shared/data/flowers12", help="flowers12, relative to the repository root")
    parser.add_argument("--cpu-reference", help=f"stage 1's CPU figure, a JSON file (default {CPU_REFERENCE}; none with --dry)")
    parser.add_argument("--budget-s", type=float, help="seconds for the whole run (default 330; dry 900)")
    parser.add_argument("--only", help="comma-separated parts or groups (" + ", ".join(BY_NAME) + ")")
    parser.add_argument("--previous", help="an earlier run's JSON: its parts fill in the ones not run now")
    parser.add_argument("--workdir", help="run directories and generated data (default: a temporary folder, removed)")
    parser.add_argument("--make-cpu-reference", action="store_true", help="run stage 1's recipe on the CPU, write --cpu-reference")
    # internal: one group of parts in a child process
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    parser.add_argument("--done", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child(args: argparse.Namespace) -> None:
    settings = Settings.from_dict(json.loads(Path(args.settings).read_text()))
    done = json.loads(Path(args.done).read_text()) if args.done else {}
    run_group(args.group.split(","), settings, args.deadline, Path(args.results), done)


def run_groups(args: argparse.Namespace, settings: Settings, results: dict, out: Path) -> None:
    """Each group in a child process of its own session (a CUDA error or a crash ends one group,
    not the run), stopped with its children at the budget. A dry run puts every part in one child:
    on a CPU the isolation buys nothing and each child's imports cost seconds."""
    deadline = results["started"] + results["budget_s"]
    selected = select(args.only)
    work = Path(settings.workdir)
    (work / "settings.json").write_text(json.dumps(settings.to_dict()))
    # offline: no weight download or albumentations update check (up to 2 s a process) is tried
    env = {**os.environ, "TRANSFERKIT_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONUNBUFFERED": "1"}
    if settings.dry:  # toy sizes: one thread is faster than two fighting other work for the cores
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    batches = [list(GROUPS)] if settings.dry else [[group] for group in GROUPS]
    for index, groups in enumerate(batches):
        names = [p.name for p in selected if p.group in groups]
        if names:
            run_child(names, deadline, work / f"group-{index}.json", work, env, results)
            write(results, out)


def run_child(names: list[str], deadline: float, group_file: Path, work: Path, env: dict, results: dict) -> None:
    left = deadline - time.time()
    done_file = work / "done.json"
    save_json(done_file, {k: v for k, v in results["parts"].items() if v.get("status") == "ok"})
    command = [sys.executable, str(Path(__file__).resolve()), "--group", ",".join(names), "--settings",
               str(work / "settings.json"), "--deadline", str(deadline), "--results", str(group_file), "--done", str(done_file)]
    stopped, returncode = False, None
    if left > 5:
        proc = subprocess.Popen(command, env=env, start_new_session=True)
        try:
            proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: it and what it started
            proc.wait()
            stopped = True
        returncode = proc.returncode
    reported = json.loads(group_file.read_text()) if group_file.is_file() else {}
    results["machine"] = reported.get("machine") or results.get("machine")
    for name in names:
        if name in reported.get("parts", {}):  # keys with "_" (a temporary run directory) stay in the child
            results["parts"][name] = {k: v for k, v in reported["parts"][name].items() if not k.startswith("_")}
        elif left <= 5:
            results["parts"][name] = {"status": "skipped", "error": f"time budget spent; run it with --only {BY_NAME[name].rerun}"}
        elif stopped:
            results["parts"][name] = {"status": "timed out", "error": f"stopped at the {results['budget_s']:.0f} s budget;"
                                      f" run it with --only {BY_NAME[name].rerun} --budget-s N"}
        else:
            results["parts"][name] = {"status": "error", "error": f"the group's process exited {returncode} before this part"
                                      " reported (a crash: see the log above)"}


def write(results: dict, out: Path) -> None:
    results["wall_s"] = time.time() - results["started"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results))
    save_json(out.with_suffix(".json"), results)


def merge_previous(results: dict, path: str, selected: list[str]) -> None:
    earlier = json.loads(Path(path).read_text())
    machine = earlier.get("machine") or {}
    when = f"{machine.get('date', 'an earlier run')} on {machine.get('card', 'an unknown card')}"
    for name, part in earlier.get("parts", {}).items():
        if name not in selected and part.get("status") == "ok":
            results["parts"][name] = {**part, "from": f"{Path(path).name}, {when}"}
    results["machine"] = results.get("machine") or earlier.get("machine")
    results["previous"] = f"{Path(path).name}, {when}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cpu_reference is None and (args.make_cpu_reference or not args.dry):
        args.cpu_reference = CPU_REFERENCE
    if args.out is None:
        args.out = str(ROOT / "runs" / "gpu-dry" / "RESULTS-gpu.md") if args.dry else str(HERE / "RESULTS-gpu.md")
    if args.group:
        child(args)
        return 0
    keep_workdir = args.workdir is not None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="transferkit-gpu-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    args.workdir = str(workdir)
    settings = Settings.for_args(args)
    try:
        if args.make_cpu_reference:
            from gpu_stages.correctness import make_cpu_reference

            make_cpu_reference(settings, args.cpu_reference)
            return 0
        out = Path(args.out).resolve()
        shown = [a if not a.startswith(str(ROOT)) else os.path.relpath(a, ROOT) for a in (argv or sys.argv[1:])]
        shown_settings = {**settings.to_dict(), "workdir": "(temporary)" if not keep_workdir else settings.workdir}
        results = {"settings": shown_settings, "command": shlex.join(["python", "benchmarks/gpu.py", *shown]),
                   "budget_s": args.budget_s or (900.0 if args.dry else 330.0), "started": time.time(), "wall_s": 0.0,
                   "parts": {}}
        if args.previous:
            merge_previous(results, args.previous, [p.name for p in select(args.only)])
        run_groups(args, settings, results, out)
        failed = [n for n in BY_NAME if results["parts"].get(n, {}).get("status") not in ("ok", None)]
        text = out.read_text() if out.is_file() else ""  # the device tool returns the output's end: the verdicts
        if "## Summary" in text:
            print("\n" + text[text.index("## Summary"):text.index("## 1. ")].strip())
        print(f"\n[gpu.py] wrote {out} and {out.with_suffix('.json').name} in {results['wall_s']:.0f} s;"
              f" {len(failed)} part(s) not ok" + (f": {', '.join(failed)}" if failed else ""))
        return 0
    finally:
        if not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
