"""Multi-label quality (issue 26): the recipe against a one-vs-rest scikit-learn probe, on CSV data sets.

    python benchmarks/multilabel.py CSV [CSV ...] [--recipe recipes/multilabel.toml] [--only probe,recipe]
        [--reuse benchmarks/MULTILABEL.json] [--out benchmarks/MULTILABEL.md]

Each CSV is a manifest ``path,label,split`` (labels joined by ``;``, splits ``train`` and ``test``,
paths relative to the CSV), as ``multilabel_data.py`` writes; the data set is named by the CSV's
folder. Cases, each fitted on the train rows and scored on the test rows:

- ``probe``: what a user's own script computes: the backbone (``--backbone``, default
  ``timm/tf_efficientnet_lite0``) with transferkit's packaged ImageNet weights, its pooled
  features at its native pretrained preprocessing (timm's data config; ``native_backbone`` and
  ``pooled_features`` of ``transfer_cases.py``), then ``StandardScaler`` fitted on train and
  ``OneVsRestClassifier(LogisticRegression(C=1, max_iter=2000))``, and the same with
  ``LogisticRegressionCV(Cs=np.logspace(-3, 2, 11), cv=5, scoring="neg_log_loss", max_iter=2000)``
  per label (C chosen per label by 5-fold stratified CV on its log-loss);
- ``recipe``: ``transferkit finetune RECIPE --set data.root=CSV`` through the real command, read
  back from the run's ``summary.json``.

Scores: test mean average precision (scikit-learn's ``average_precision_score`` on the predicted
probabilities), macro over the labels with at least one test positive and micro over every
(image, label) pair; the probe's F1 and subset accuracy are at a 0.5 threshold. Results go to
``--out`` as Markdown (and ``.json`` beside it); ``--reuse`` takes the cases not in ``--only`` from
an earlier JSON's row of the same data set.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASES = ("probe", "recipe")
CS = np.logspace(-3, 2, 11)


def read_csv(path: Path) -> tuple[list[str], dict[str, tuple[list[Path], np.ndarray]]]:
    """The label vocabulary (sorted) and, per split, the image paths and their multi-hot matrix."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [(r["path"].strip(), [x.strip() for x in r["label"].split(";")], r["split"].strip()) for r in csv.DictReader(fh)]
    labels = sorted({x for _, cell, _ in rows for x in cell})
    index = {x: j for j, x in enumerate(labels)}
    out = {}
    for split in ("train", "test"):
        mine = [(p, cell) for p, cell, s in rows if s == split]
        targets = np.zeros((len(mine), len(labels)), dtype=np.int64)
        for i, (_, cell) in enumerate(mine):
            targets[i, [index[x] for x in cell]] = 1
        out[split] = ([path.parent / p for p, _ in mine], targets)
    return labels, out


def scores(targets: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    from sklearn.metrics import average_precision_score, f1_score

    keep = targets.sum(0) > 0
    predicted = (probs >= 0.5).astype(int)
    return {
        "macro_map": float(average_precision_score(targets[:, keep], probs[:, keep], average="macro")),
        "micro_map": float(average_precision_score(targets, probs, average="micro")),
        "macro_f1": float(f1_score(targets[:, keep], predicted[:, keep], average="macro", zero_division=0)),
        "subset_accuracy": float((predicted == targets).all(1).mean()),
        "per_label_ap": {x: float(average_precision_score(targets[:, j], probs[:, j])) if keep[j] else None
                         for j, x in enumerate(labels)},
    }


def probe(csv_path: Path, backbone: str) -> dict:
    import torch
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from torchvision.datasets.folder import default_loader
    from transfer_cases import native_backbone, pooled_features

    class Rows(torch.utils.data.Dataset):
        def __init__(self, paths: list[Path], targets: np.ndarray, transform) -> None:
            self.paths, self.targets, self.transform = paths, targets, transform

        def __len__(self) -> int:
            return len(self.paths)

        def __getitem__(self, i: int):
            return self.transform(default_loader(str(self.paths[i]))), torch.from_numpy(self.targets[i])

    labels, splits = read_csv(csv_path)
    started = time.perf_counter()
    body, config, transform = native_backbone(backbone)
    feats = {split: pooled_features(body, Rows(*splits[split], transform)) for split in splits}
    feature_seconds = time.perf_counter() - started
    (x, y), (xt, yt) = feats["train"], feats["test"]
    out = {"backbone": backbone, "feature_seconds": feature_seconds, "features": int(x.shape[1]),
           "input_size": list(config["input_size"]), "crop_pct": config.get("crop_pct"), "interpolation": config.get("interpolation")}
    fits = {
        "C1": OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=2000)),
        "CV": OneVsRestClassifier(LogisticRegressionCV(Cs=CS, cv=5, scoring="neg_log_loss", max_iter=2000)),
    }
    for name, clf in fits.items():
        t = time.perf_counter()
        model = make_pipeline(StandardScaler(), clf)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x, y)
        out[name] = {**scores(yt, model.predict_proba(xt), labels), "seconds": feature_seconds + time.perf_counter() - t,
                     "convergence_warnings": sum(issubclass(w.category, ConvergenceWarning) for w in caught)}
        if name == "CV":
            out[name]["C"] = {label: float(est.C_[0]) for label, est in zip(labels, clf.estimators_)}
        print(f"    probe {name}: macro mAP {out[name]['macro_map']:.4f}, micro mAP {out[name]['micro_map']:.4f}"
              f" ({out[name]['seconds']:.0f} s)", flush=True)
    return out


def recipe(csv_path: Path, recipe_path: str, sets: list[str], tmp: Path) -> dict:
    run = tmp / "run"
    command = [sys.executable, "-m", "transferkit", "finetune", recipe_path, "--set", f"data.root={csv_path}", "--output", str(run)]
    for item in sets:
        command += ["--set", item]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0 or not (run / "summary.json").is_file():
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"    recipe failed: {tail}", flush=True)
        return {"error": tail, "seconds": wall}
    summary = json.loads((run / "summary.json").read_text())
    test = summary["test"]
    out = {k: test[k] for k in ("macro_map", "micro_map", "macro_f1", "subset_accuracy")}
    out.update(chosen=summary["final"]["chosen"], per_label_ap=test.get("per_label_ap"), seconds=wall)
    print(f"    recipe: macro mAP {out['macro_map']:.4f}, micro mAP {out['micro_map']:.4f} ({wall:.0f} s)", flush=True)
    return out


def describe(csv_path: Path) -> dict:
    labels, splits = read_csv(csv_path)
    source = "?"
    readme = csv_path.parent / "README.md"
    if readme.is_file() and "`" in (first := readme.read_text().splitlines()[0]):
        source = first.split("`")[1]
    return {"name": csv_path.parent.name, "csv": csv_path.name, "source": source, "labels": labels,
            "train_images": len(splits["train"][0]), "test_images": len(splits["test"][0]),
            "positives": {x: [int(splits[s][1][:, j].sum()) for s in ("train", "test")] for j, x in enumerate(labels)}}


def machine() -> str:
    import platform

    import torch

    return f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__} on {torch.get_num_threads()} thread(s)"


def _f(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def _pair(case: dict, seconds: bool = True) -> str:
    if "error" in case:
        return "failed"
    if "macro_map" not in case:
        return "—"
    return f"{_f(case['macro_map'])} / {_f(case['micro_map'])}" + (f" ({case['seconds']:.0f} s)" if seconds else "")


def report(rows: list[dict], args: argparse.Namespace, where: str, minutes: float) -> list[str]:
    name = Path(args.recipe).name
    lines = [
        "# Multi-label benchmark",
        "",
        f"Machine: {where}. Command: `python benchmarks/multilabel.py {' '.join(args.display)} --recipe {args.recipe}"
        f" --only {args.only}` ({time.strftime('%Y-%m-%d')}, {minutes:.0f} min). Test mean average precision, macro over the"
        " labels with a test positive / micro over every (image, label) pair; wall time in seconds in brackets (a probe's"
        " includes computing its features).",
        "",
        f"- **probe**: `{args.backbone}` with transferkit's packaged ImageNet weights, pooled features at its native pretrained"
        " preprocessing (timm's data config), `StandardScaler` then scikit-learn's `OneVsRestClassifier` of"
        " `LogisticRegression(C=1, max_iter=2000)` (C=1) or of `LogisticRegressionCV(Cs=np.logspace(-3, 2, 11), cv=5,"
        " scoring=\"neg_log_loss\", max_iter=2000)` (CV: C per label by 5-fold stratified CV), fitted on every train image;",
        f"- **{name}**: `transferkit finetune {args.recipe} --set data.root=CSV` (it holds out its own validation images from"
        " train); macro F1 and subset accuracy at its own thresholds, and the final weights it chose.",
        "",
        f"| data set | labels | train / test | probe C=1 | probe CV | {name} | {name} − best probe (macro) |"
        f" {name}: macro F1 / subset acc. | {name}: chosen |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        p, r = row.get("probe", {}), row.get("recipe", {})
        best = max((p[k]["macro_map"] for k in ("C1", "CV") if k in p), default=None)
        margin = f"{r['macro_map'] - best:+.4f}" if "macro_map" in r and best is not None else "—"
        f1 = f"{_f(r['macro_f1'])} / {_f(r['subset_accuracy'])}" if "macro_f1" in r else "—"
        lines.append(f"| {row['name']} | {len(row['labels'])} | {row['train_images']} / {row['test_images']} |"
                     f" {_pair(p.get('C1', {}))} | {_pair(p.get('CV', {}))} | {_pair(r)} | {margin} | {f1} | {r.get('chosen', '—')} |")
    for row in rows:
        p, r = row.get("probe", {}), row.get("recipe", {})
        ap = lambda case, x: _f((case.get("per_label_ap") or {}).get(x))  # noqa: E731
        lines += ["", f"**{row['name']}** (composites of `{row['source']}`): positives and test average precision per label"
                  + (f"; probe CV's C per label: {', '.join(f'{c:g}' for c in p['CV']['C'].values())}" if "C" in p.get("CV", {}) else ""),
                  "", f"| label | train / test positives | probe C=1 | probe CV | {name} |", "|---|---|---|---|---|"]
        for x in row["labels"]:
            tr, te = row["positives"][x]
            lines.append(f"| {x} | {tr} / {te} | {ap(p.get('C1', {}), x)} | {ap(p.get('CV', {}), x)} | {ap(r, x)} |")
    lines += [
        "",
        "The data: real photos, not real multi-label photos. `benchmarks/multilabel_data.py` builds each data set from a"
        " single-label ImageFolder's `train/` and `test/`: every image is a 2 x 2 grid of 1 to 4 of its photos (each resized"
        " and centre-cropped to half the side, empty cells grey), with 1, 2 or 3 distinct classes (probabilities 0.30, 0.45,"
        " 0.25), one class filling a second cell half the time, classes drawn in proportion to their photos, no photo in more"
        " than 3 composites, train and test composites from their own split's photos only; the labels are the distinct"
        " classes. Each data set's `README.md` (beside its `labels.csv`, not committed) gives its command, seed and counts.",
        *(["", f"Reused from `{Path(args.reuse).name}` (an earlier run of this script on the same data sets, not rerun here):"
           f" {', '.join(sorted(args.reused))}."] if args.reused else []),
        "",
        "Times on a shared 2-core CPU are indicative only; the figures are what they are.",
    ]
    return lines


def check_backbone(args: argparse.Namespace) -> None:
    """Say so when the recipe's backbone (if the recipe is there to read) is not the probe's."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(args.recipe)
    if path.is_file():
        named = tomllib.loads(path.read_text()).get("backbone", {}).get("name")
        if named and named != args.backbone:
            print(f"warning: {args.recipe} uses {named}, the probe {args.backbone} (--backbone)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csvs", nargs="+", metavar="CSV")
    parser.add_argument("--recipe", default="recipes/multilabel.toml")
    parser.add_argument("--backbone", default="timm/tf_efficientnet_lite0", help="the probe's backbone (the recipe's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe overrides")
    parser.add_argument("--only", default="probe,recipe", help="comma-separated cases: probe, recipe")
    parser.add_argument("--out", default=str(HERE / "MULTILABEL.md"))
    parser.add_argument("--reuse", metavar="JSON", help="an earlier MULTILABEL.json: the cases not in --only come from its row"
                        " of the same data set (the report says which and from where)")
    args = parser.parse_args()
    cases = [c for c in args.only.split(",") if c]
    if unknown := set(cases) - set(CASES):
        sys.exit(f"--only: unknown case(s) {', '.join(sorted(unknown))}; known: {', '.join(CASES)}")
    check_backbone(args)
    earlier = {r["name"]: r for r in json.loads(Path(args.reuse).read_text())} if args.reuse else {}
    args.reused = set()
    args.display = [f"{Path(c).parent.name}/{Path(c).name}" for c in args.csvs]
    work = Path(tempfile.mkdtemp(prefix="transferkit-multilabel-"))
    started, load = time.time(), os.getloadavg()[0]
    rows = []
    for given in args.csvs:
        csv_path = Path(given).resolve()
        if not csv_path.is_file():
            sys.exit(f"{given}: no such CSV file")
        row = describe(csv_path)
        print(f"{row['name']}: {len(row['labels'])} labels, {row['train_images']} train / {row['test_images']} test", flush=True)
        if "probe" in cases:
            row["probe"] = probe(csv_path, args.backbone)
        if "recipe" in cases:
            row["recipe"] = recipe(csv_path, args.recipe, args.set, work / row["name"])
        for case in CASES:
            if case not in row and case in earlier.get(row["name"], {}):
                row[case] = earlier[row["name"]][case]
                args.reused.add(case)
        rows.append(row)
        where = f"{machine()}; load average {load:.2f} before, {os.getloadavg()[0]:.2f} after"
        lines = report(rows, args, where, (time.time() - started) / 60)
        Path(args.out).write_text("\n".join(lines) + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
