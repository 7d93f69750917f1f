"""What to label next: ``transferkit suggest``'s pick against random labelling, simulated.

    .venv/bin/python benchmarks/active_labels.py ROOT [ROOT ...] --out benchmarks/SUGGEST.md
        [--start 5] [--per-round 2] [--rounds 4] [--repeats 3] [--backbone timm/tf_efficientnet_lite0] [--work DIR]

For every ImageFolder ROOT (``train/`` + ``test/``): the backbone's features of every image at its
native preprocessing, computed once (kept in ``--work``). Then, for each repeat, ``--start``
labelled images per class drawn at random from ``train/``; the rest of ``train/`` is the
unlabelled pool. Each round adds ``--per-round`` x classes images from the pool, chosen by

- ``suggest``: ``workbench.suggest.picking.pick`` (the command's own ranking) on the current
  model's probabilities and the features;
- ``margin``: the smallest margins alone (uncertainty without diversity);
- ``random``: uniformly at random;

and refits the model: transferkit's phase-1 probe (``fit_probe``, C by cross-validation) on the
labelled images' features, which is what a run's phase 1 is. Test top-1 after every round, the
mean over repeats. Test images are never in the pool.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def features(root: Path, backbone_name: str, work: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    cache = work / f"{root.name}-{backbone_name.replace('/', '_')}.npz"
    if cache.is_file():
        data = np.load(cache)
        return {s: (data[f"{s}_x"], data[f"{s}_y"]) for s in ("train", "test")}
    from transferkit.data.preprocessing import preprocessing_for
    from transferkit.data.sources import FileImages
    from transferkit.engine.runtime.device import resolve_runtime
    from transferkit.engine.training.feature_cache import FeatureCache
    from transferkit.models.backbone import create_backbone, data_config
    from transferkit.recipe import TrainConfig

    backbone = create_backbone(backbone_name, weights="imagenet")
    native = preprocessing_for(data_config(backbone), None)
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    out = {}
    for split in ("train", "test"):
        paths, labels = [], []
        for c, name in enumerate(classes):
            files = sorted(f for f in (root / split / name).iterdir() if f.is_file())
            paths += files
            labels += [c] * len(files)
        images = FileImages(paths, labels, classes)
        cache_x = FeatureCache.compute(backbone, images, native, resolve_runtime(TrainConfig()), batch_size=64, desc=f"{split} features")
        out[split] = (cache_x.features[0].numpy(), np.asarray(labels))
    np.savez(cache, **{f"{s}_{k}": v for s, (x, y) in out.items() for k, v in (("x", x), ("y", y))})
    return out


def fit_predict(x: np.ndarray, y: np.ndarray, classes: int, queries: list[np.ndarray]) -> list[np.ndarray]:
    from transferkit.engine.training.probe import fit_probe

    fit = fit_probe(torch.as_tensor(x), torch.as_tensor(y), classes)
    return [torch.softmax(torch.as_tensor(q) @ fit.weight.T + fit.bias, dim=1).numpy() for q in queries]


def simulate(data: dict, strategy: str, start: int, per_round: int, rounds: int, seed: int) -> list[float]:
    from transferkit.workbench.suggest.picking import margins, pick

    (x, y), (xt, yt) = data["train"], data["test"]
    classes = int(y.max()) + 1
    rng = np.random.default_rng(seed)
    labelled = np.concatenate([rng.choice(np.flatnonzero(y == c), start, replace=False) for c in range(classes)])
    curve = []
    for round_ in range(rounds + 1):
        pool = np.setdiff1d(np.arange(len(y)), labelled)
        probs_test, probs_pool = fit_predict(x[labelled], y[labelled], classes, [xt, x[pool]])
        curve.append(float((probs_test.argmax(1) == yt).mean()))
        if round_ == rounds:
            break
        n = per_round * classes
        if strategy == "suggest":
            chosen = pool[pick(x[pool], probs_pool, x[labelled], n).order]
        elif strategy == "margin":
            chosen = pool[np.argsort(margins(probs_pool), kind="stable")[:n]]
        else:
            chosen = rng.choice(pool, n, replace=False)
        labelled = np.concatenate([labelled, chosen])
    return curve


STRATEGIES = ("suggest", "margin", "random")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+")
    parser.add_argument("--backbone", default="timm/tf_efficientnet_lite0")
    parser.add_argument("--start", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="transferkit-active-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for root in map(Path, args.roots):
        data = features(root, args.backbone, work)
        classes = int(data["train"][1].max()) + 1
        row = {"folder": root.name, "classes": classes, "train": len(data["train"][1]), "test": len(data["test"][1])}
        for strategy in STRATEGIES:
            started = time.perf_counter()
            curves = [simulate(data, strategy, args.start, args.per_round, args.rounds, seed) for seed in range(args.repeats)]
            row[strategy] = {"mean": np.mean(curves, axis=0).tolist(), "curves": curves, "seconds": time.perf_counter() - started}
            print(f"{root.name} {strategy}: " + " ".join(f"{v:.4f}" for v in row[strategy]["mean"]), flush=True)
        results.append(row)
    if args.out:
        write(results, args)


def write(results: list[dict], args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    rounds = range(args.rounds + 1)
    lines = ["# What to label next: `suggest` against random labelling", "",
             f"Machine: {platform.machine()}, CPU; `python benchmarks/active_labels.py {' '.join(r['folder'] for r in results)}"
             f" --start {args.start} --per-round {args.per_round} --rounds {args.rounds} --repeats {args.repeats}`;"
             f" backbone {args.backbone} (native preprocessing); {time.strftime('%Y-%m-%d')}.", "",
             f"Start: {args.start} labelled images per class, drawn at random; each round labels {args.per_round} more per class"
             " (as many images in all) chosen by each strategy; the model after each round is transferkit's phase-1 probe."
             f" Test top-1, mean of {args.repeats} repeats (different starting images).", ""]
    header = ("| folder | strategy | " + " | ".join(f"round {r}" for r in rounds)
              + f" | mean of rounds 1-{args.rounds} | gain over random: last round / mean |")
    lines += [header, "|" + "---|" * (len(rounds) + 4)]
    gains: dict[str, list[tuple[float, float]]] = {s: [] for s in STRATEGIES}
    for row in results:
        labelled = [row["classes"] * (args.start + r * args.per_round) for r in rounds]
        base = row["random"]["mean"]
        for strategy in STRATEGIES:
            mean = row[strategy]["mean"]
            gain = (mean[-1] - base[-1], float(np.mean(mean[1:]) - np.mean(base[1:])))
            gains[strategy].append(gain)
            cells = " | ".join(f"{v:.4f}" for v in mean)
            lines.append(f"| {row['folder']} ({row['classes']} classes) | {strategy} | {cells} | {np.mean(mean[1:]):.4f} |"
                         f" {gain[0]:+.4f} / {gain[1]:+.4f} |")
        lines.append("| | labelled images | " + " | ".join(str(n) for n in labelled) + " | | |")
    lines.append("")
    for strategy in ("suggest", "margin"):
        last, mean = np.mean([g[0] for g in gains[strategy]]), np.mean([g[1] for g in gains[strategy]])
        worst = min(g[0] for g in gains[strategy])
        lines.append(f"`{strategy}` against random labelling, mean over {len(results)} folders: {last:+.4f} after the last round"
                     f" (lowest {worst:+.4f}), {mean:+.4f} averaged over rounds 1-{args.rounds}.")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
