"""transferkit audit on a copy of an ImageFolder with planted issues (issue 16's check).

    python benchmarks/audit_planted.py ../shared/data/flowers12 --work /tmp/audit-planted [--per-class 5]

Copies DATA (train/ and test/) into WORK/data, then, seeded: moves 5% of the training images to
a wrong class folder, puts 10 training images into test/ (4 byte copies, 3 re-encoded as JPEG
quality 75, 3 shrunk to 80% and re-encoded: leaks) and 5 into train/ again (3 byte copies, 2
mirrored: duplicates); audits the copy with the recipe and prints how many of the moved images
the top-N ranking holds (N = the number moved), which planted leaks and duplicates were found,
and the wall times. ``--per-class N`` keeps N training images of each class first (seeded): the
small folders a new user audits (60 images, 3 of them moved).
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

from PIL import Image, ImageOps

from transferkit.workbench.audit.scan import audit
from transferkit.workbench.audit.similarity import duplicate_groups


def plant(data: Path, work: Path, seed: int, fraction: float, per_class: int = 0) -> dict:
    root = work / "data"
    if root.exists():
        shutil.rmtree(root)
    for split in ("train", "test"):
        shutil.copytree(data / split, root / split)
    rng = random.Random(seed)
    if per_class:
        for folder in sorted(p for p in (root / "train").iterdir() if p.is_dir()):
            for extra in rng.sample(sorted(folder.iterdir()), max(0, len(list(folder.iterdir())) - per_class)):
                extra.unlink()
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    files = sorted(p for p in (root / "train").glob("*/*") if p.is_file())
    moved_count = round(fraction * len(files))
    picked = rng.sample(files, moved_count + 15)
    moved, sources = picked[:moved_count], picked[moved_count:]
    flips = {}
    for path in moved:
        target = rng.choice([c for c in classes if c != path.parent.name])
        new = root / "train" / target / f"moved_{path.name}"
        shutil.move(path, new)
        flips[str(new)] = path.parent.name
    leaks, duplicates = {}, {}
    for i, path in enumerate(sources[:10]):
        out = root / "test" / path.parent.name / f"leak{i}_{path.stem}.jpg"
        if i < 4:
            out = out.with_suffix(path.suffix)
            shutil.copyfile(path, out)
        else:
            image = Image.open(path).convert("RGB")
            if i >= 7:
                image = image.resize((int(image.width * 0.8), int(image.height * 0.8)), Image.BICUBIC)
            image.save(out, quality=75)
        leaks[str(out)] = str(path)
    for i, path in enumerate(sources[10:]):
        out = path.with_name(f"dup{i}_{path.name}")
        if i < 3:
            shutil.copyfile(path, out)
        else:
            ImageOps.mirror(Image.open(path).convert("RGB")).save(out.with_suffix(".jpg"), quality=90)
            out = out.with_suffix(".jpg")
        duplicates[str(out)] = str(path)
    return {"root": root, "flips": flips, "leaks": leaks, "duplicates": duplicates}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--recipe", default="recipes/flowers.toml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--per-class", type=int, default=0, help="keep this many training images of each class (0: all)")
    args = parser.parse_args()
    planted = plant(args.data, args.work, args.seed, args.fraction, args.per_class)
    started = time.perf_counter()
    result = audit(planted["root"], args.recipe, output=args.work / "audit")
    wall = time.perf_counter() - started
    names = result.images.names
    top = {names[i] for i in result.label_issues.order[: len(planted["flips"])]}
    held = len(top & set(planted["flips"]))
    by_name = {names[f.index]: f for f in result.findings}
    leaks = sum(by_name.get(copy) is not None and by_name[copy].kind == "leak" for copy in planted["leaks"])
    # a copy and its original in one group of copies, one of them flagged (the first of a group is kept)
    group_of = {i: g for g in duplicate_groups(result.pairs, len(names)) for i in g}
    index = {n: i for i, n in enumerate(names)}
    dups = sum(index[copy] in group_of.get(index[original], []) and (copy in by_name or original in by_name)
               for copy, original in planted["duplicates"].items())
    print(f"moved labels: {held} of {len(planted['flips'])} in the top {len(planted['flips'])} ({held / len(planted['flips']):.3f})")
    flagged = {names[i] for i in result.label_issues.flagged}
    hits = len(flagged & set(planted["flips"]))
    print(f"flagged mislabeled: {len(flagged)}, of them moved {hits}: precision {hits / max(len(flagged), 1):.3f},"
          f" recall {hits / len(planted['flips']):.3f}")
    print(f"planted leaks found: {leaks} of {len(planted['leaks'])}; planted duplicates found: {dups} of {len(planted['duplicates'])}")
    print(f"counts: {result.counts}")
    print(f"wall: features {result.timings['features']:.1f} s, after the features {result.timings['analysis']:.1f} s,"
          f" whole audit {wall:.1f} s")


if __name__ == "__main__":
    main()
