"""Does ``transferkit select`` rank backbones as fine-tuning them would?

    .venv/bin/python benchmarks/backbone_select.py ROOT [ROOT ...] --out benchmarks/SELECT.md
        [--backbones timm/tf_efficientnet_lite0,timm/tf_efficientnet_lite1,timm/tf_efficientnet_lite2]
        [--recipe recipes/flowers.toml] [--work DIR] [--set KEY=VALUE ...]

For every ImageFolder ROOT (``train/`` + ``test/``), in one run:

- ``select``: ``transferkit select RECIPE --backbones ...`` on ROOT's training images only (a
  converged probe's cross-validated accuracy and log-loss per backbone, at each one's native
  resolution), through the real command, with its wall time;
- ``fine-tuned``: ``transferkit finetune RECIPE --set backbone.name=B`` for each backbone (the
  recipe as shipped, ``train.folds = 1`` unless ``--set`` says otherwise: cross-fitting every
  backbone would cost 5 fine-tunings each), scored on ``test/``: the final model's top-1 and the
  fine-tuned phase's; each run in its own process (``transfer_cases.py recipe``).

It then says, per folder, whether select's first choice is the fine-tuned best (or within one test
image of it), and Spearman's rank correlation of the two orders. Finished fine-tuning runs are
kept in ``--work`` and reused when the script runs again with the same settings, as are
finished ``select`` reports.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BACKBONES = "timm/tf_efficientnet_lite0,timm/tf_efficientnet_lite1,timm/tf_efficientnet_lite2"


def finetuned(root: Path, backbone: str, args: argparse.Namespace) -> dict:
    work = Path(args.work) / root.name / backbone.replace("/", "_")
    done = work / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    work.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(HERE / "transfer_cases.py"), "recipe", str(root), "--recipe", args.recipe,
               "--tmp", str(work), "--set", f"backbone.name={backbone}", "--set", "train.folds=1",
               *[x for item in args.set for x in ("--set", item)]]
    out = subprocess.run(command, capture_output=True, text=True)
    line = next((text for text in out.stdout.splitlines() if text.startswith("RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"{root.name} {backbone}: fine-tuning failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    result = json.loads(line[len("RESULT "):])
    done.write_text(json.dumps(result))
    return result


def select(root: Path, args: argparse.Namespace) -> dict:
    report = Path(args.work) / root.name / "select"
    if (report / "select.json").is_file() and (report / "wall_seconds").is_file():
        return {**json.loads((report / "select.json").read_text()), "wall_seconds": float((report / "wall_seconds").read_text())}
    command = [sys.executable, "-m", "transferkit", "select", args.recipe, "--set", f"data.root={root}",
               "--backbones", args.backbones, "--output", str(report),
               *[x for item in args.set for x in ("--set", item)]]
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{root.name}: transferkit select failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    wall = time.perf_counter() - started
    (report / "wall_seconds").write_text(f"{wall:.1f}")
    return {**json.loads((report / "select.json").read_text()), "wall_seconds": wall}


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(set(a)) > 1 and len(set(b)) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+")
    parser.add_argument("--backbones", default=BACKBONES)
    parser.add_argument("--recipe", default=str(HERE.parent / "recipes" / "flowers.toml"))
    parser.add_argument("--work", default=None, help="where fine-tuning runs are kept (default: a new temporary folder)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--only", default="select,finetune")
    parser.add_argument("--out", default=None, help="Markdown table (and .json beside it)")
    args = parser.parse_args()
    args.work = args.work or tempfile.mkdtemp(prefix="transferkit-select-")
    backbones = args.backbones.split(",")
    rows = []
    for root in map(Path, args.roots):
        print(f"{root.name}", flush=True)
        row: dict = {"folder": root.name, "finetuned": {},
                     "test_images": sum(1 for f in (root / "test").rglob("*") if f.is_file())}
        if "select" in args.only:
            row["select"] = select(root, args)
            print(f"  select: {[c['backbone'] for c in row['select']['ranking']]} in {row['select']['wall_seconds']:.0f} s", flush=True)
        if "finetune" in args.only:
            for backbone in backbones:
                row["finetuned"][backbone] = finetuned(root, backbone, args)
                r = row["finetuned"][backbone]
                print(f"  {backbone}: final {r['top1']:.4f}, fine-tuned {r['finetune_top1']}, {r['seconds']:.0f} s", flush=True)
        rows.append(row)
    if args.out:
        write(rows, backbones, args)


def write(rows: list[dict], backbones: list[str], args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    short = {b: b.split("/")[-1].replace("tf_efficientnet_", "") for b in backbones}
    lines = ["# Backbone selection benchmark", "",
             f"Machine: {platform.machine()}, {platform.processor() or 'CPU'}; "
             f"`python benchmarks/backbone_select.py {' '.join(r['folder'] for r in rows)} --out {out}`; "
             f"{time.strftime('%Y-%m-%d')}.", ""]
    header = "| folder | " + " | ".join(f"{short[b]}: select CV top-1 / log-loss | {short[b]}: test final (fine-tuned)" for b in backbones)
    lines += [header + " | select's pick | best final | best fine-tuned | pick's gap: final / fine-tuned | Spearman: final / fine-tuned"
              " | select time |", "|" + "---|" * (2 * len(backbones) + 7)]
    agree = {"final": 0, "fine-tuned": 0}
    for row in rows:
        sel = {c["backbone"]: c for c in row["select"]["ranking"]}
        fin = row["finetuned"]
        cells = []
        for b in backbones:
            cells.append(f"{sel[b]['cv_top1']:.4f} / {sel[b]['cv_log_loss']:.4f}")
            cells.append(f"{fin[b]['top1']:.4f} ({fin[b]['finetune_top1']:.4f})")
        pick = row["select"]["ranking"][0]["backbone"]
        one_image = 1.0 / row["test_images"]
        gaps, rhos, bests = {}, {}, {}
        for kind, key in (("final", "top1"), ("fine-tuned", "finetune_top1")):
            bests[kind] = max(backbones, key=lambda b: fin[b][key])
            gaps[kind] = fin[bests[kind]][key] - fin[pick][key]
            agree[kind] += gaps[kind] <= one_image + 1e-9
            rhos[kind] = spearman([-sel[b]["rank"] for b in backbones], [fin[b][key] for b in backbones])
        lines.append(f"| {row['folder']} | " + " | ".join(cells) + f" | {short[pick]} | {short[bests['final']]} |"
                     f" {short[bests['fine-tuned']]} | {gaps['final']:+.4f} / {gaps['fine-tuned']:+.4f} |"
                     f" {rhos['final']:.2f} / {rhos['fine-tuned']:.2f} | {row['select']['wall_seconds']:.0f} s |")
    lines += ["", f"select's pick is the best backbone, or within one test image of it, on {agree['final']} of {len(rows)} folders"
              f" by the final model and on {agree['fine-tuned']} of {len(rows)} by the fine-tuned weights."]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
