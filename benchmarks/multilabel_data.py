"""A multi-label data set of composite photos, built from a single-label ImageFolder (issue 26).

    python benchmarks/multilabel_data.py SOURCE_ROOT OUT_DIR [--train 500] [--test 300] [--seed 0]
        [--size 224] [--max-uses 3]

SOURCE_ROOT is an ImageFolder with ``train/<class>/`` and ``test/<class>/``. Each composite is a
2 x 2 grid (``size`` x ``size`` px, JPEG quality 95) whose cells hold 1 to 4 of its photos, each
resized and centre-cropped to ``size / 2``; cells left empty are neutral grey (128, 128, 128). Its
labels are the distinct source classes in it. How one composite is drawn:

1. the number of distinct classes k: 1, 2 or 3 with probabilities 0.30, 0.45, 0.25;
2. the k classes, without replacement, each with probability proportional to the uses its photos
   have left (so a class's share of the labels follows its share of the split's photos: a
   balanced source gives balanced labels, an unbalanced one keeps its imbalance);
3. with probability 1/2 one of the k classes (uniform) fills a second cell with another of its
   photos, so a composite holds k or k + 1 photos;
4. each photo: among the class's photos with uses left, one of the least used so far (uniform
   among ties), never twice in one composite; so a split's photos are used evenly and each at
   most ``--max-uses`` times (default 3);
5. the photos go to distinct cells in random order.

Train composites use only ``train/`` photos and test composites only ``test/`` photos. Writes
``OUT_DIR/images/{train,test}/NNNNNN.jpg``, ``OUT_DIR/labels.csv`` (``path,label,split``, labels
joined by ``;`` in alphabetical order, paths relative to the CSV), ``OUT_DIR/sources.csv`` (which
source photo sits in which cell of each composite) and ``OUT_DIR/README.md`` (the construction,
the counts, the positives per label). The same source, arguments and seed give the same files.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

SPLITS = ("train", "test")
EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
DISTINCT = {1: 0.30, 2: 0.45, 3: 0.25}  # the number of distinct classes in a composite
SECOND_PHOTO = 0.5  # the chance that one of its classes fills a second cell
GREY = (128, 128, 128)
CELLS = ("top-left", "top-right", "bottom-left", "bottom-right")


@dataclass
class Composite:
    name: str
    split: str
    cells: list[tuple[int, str, Path]]  # (cell index, class, source photo)

    @property
    def labels(self) -> list[str]:
        return sorted({label for _, label, _ in self.cells})


def photos(root: Path, split: str) -> dict[str, list[Path]]:
    """``root/split``'s photos per class, sorted (the plan depends on nothing but names and seed)."""
    folder = root / split
    if not folder.is_dir():
        sys.exit(f"{root}: expected an ImageFolder with train/ and test/ class folders; no {split}/")
    found = {c.name: sorted(p for p in c.iterdir() if p.suffix.lower() in EXTENSIONS)
             for c in sorted(folder.iterdir()) if c.is_dir()}
    return {c: ps for c, ps in found.items() if ps}


def plan(by_class: dict[str, list[Path]], split: str, count: int, seed: int, max_uses: int) -> list[Composite]:
    """Draw ``count`` composites from one split's photos (see the module's docstring)."""
    rng = random.Random(f"{seed}:{split}")
    uses = {p: 0 for ps in by_class.values() for p in ps}

    def left(label: str) -> int:
        return sum(max_uses - uses[p] for p in by_class[label])

    def pick(label: str, taken: set[Path]) -> Path:
        free = [p for p in by_class[label] if uses[p] < max_uses and p not in taken]
        least = min(uses[p] for p in free)
        chosen = rng.choice([p for p in free if uses[p] == least])
        uses[chosen] += 1
        taken.add(chosen)
        return chosen

    out = []
    for i in range(count):
        k = rng.choices(list(DISTINCT), weights=list(DISTINCT.values()))[0]
        labels: list[str] = []
        for _ in range(k):
            pool = [c for c in by_class if c not in labels and left(c) > 0]
            if not pool:
                break
            labels.append(rng.choices(pool, weights=[left(c) for c in pool])[0])
        if not labels:
            sys.exit(f"{split}: the photos ran out after {i} composites; ask for fewer or raise --max-uses (now {max_uses})")
        wanted = rng.random() < SECOND_PHOTO
        taken: set[Path] = set()
        chosen = [(label, pick(label, taken)) for label in labels]
        if wanted:
            twice = [c for c in labels if sum(1 for p in by_class[c] if uses[p] < max_uses and p not in taken) > 0]
            if twice:
                label = rng.choice(twice)
                chosen.append((label, pick(label, taken)))
        where = rng.sample(range(4), len(chosen))
        out.append(Composite(f"{i:06d}", split, sorted((w, label, p) for w, (label, p) in zip(where, chosen))))
    return out


def render(composite: Composite, size: int) -> Image.Image:
    half = size // 2
    canvas = Image.new("RGB", (size, size), GREY)
    for cell, _, path in composite.cells:
        with Image.open(path) as photo:
            tile = ImageOps.fit(photo.convert("RGB"), (half, half), Image.Resampling.BICUBIC)
        canvas.paste(tile, ((cell % 2) * half, (cell // 2) * half))
    return canvas


def readme(args: argparse.Namespace, source: Path, sources: dict, built: dict[str, list[Composite]]) -> str:
    classes = sorted(set(sources["train"]) | set(sources["test"]))
    lines = [
        f"# Multi-label composites of `{source.name}`",
        "",
        f"Built by `benchmarks/multilabel_data.py {source.name} {Path(args.out).name} --train {args.train} --test {args.test}"
        f" --seed {args.seed} --size {args.size} --max-uses {args.max_uses}` (transferkit's repository). Not real multi-label"
        f" photos: every image is a 2 x 2 grid ({args.size} x {args.size} px, JPEG quality 95) of 1 to 4 single-label photos"
        f" of `{source.name}`, each resized and centre-cropped to {args.size // 2} px, empty cells grey (128, 128, 128). Its"
        " labels are the distinct source classes in it.",
        "",
        f"- distinct classes per composite: {', '.join(f'{k} with probability {p:.2f}' for k, p in DISTINCT.items())};"
        " the classes drawn without replacement, each in proportion to the uses its photos have left (a class's share of"
        " the labels follows its share of the split's photos);",
        f"- with probability {SECOND_PHOTO:g}, one of those classes fills a second cell with another of its photos (a class may"
        " fill two cells), so a composite holds k or k + 1 photos, in random cells;",
        f"- train composites use only `train/` photos and test composites only `test/` photos; within a split the least-used"
        f" photo of a class is taken first, and no photo is used more than {args.max_uses} times, nor twice in one composite;",
        f"- seed {args.seed}; the same source, arguments and seed give the same files. `sources.csv` names the source photo in"
        " each cell.",
        "",
        f"Classes ({len(classes)}): {', '.join(classes)}.",
        "",
        "| | " + " | ".join(SPLITS) + " |",
        "|---|" + "---|" * len(SPLITS),
    ]
    col = {s: built[s] for s in SPLITS}
    per_label = {s: Counter(label for c in col[s] for label in c.labels) for s in SPLITS}
    used = {s: Counter(p for c in col[s] for _, _, p in c.cells) for s in SPLITS}
    rows = [
        ("composites", lambda s: str(len(col[s]))),
        ("source photos (used / available)", lambda s: f"{len(used[s])} / {sum(len(v) for v in sources[s].values())}"),
        ("uses per used photo (min / mean / max)", lambda s: f"{min(used[s].values())} / "
         f"{sum(used[s].values()) / len(used[s]):.2f} / {max(used[s].values())}"),
        *((f"composites with {k} label(s)", lambda s, k=k: str(sum(len(c.labels) == k for c in col[s]))) for k in DISTINCT),
        *((f"composites with {n} photo(s)", lambda s, n=n: str(sum(len(c.cells) == n for c in col[s]))) for n in range(1, 5)),
        ("mean labels per composite", lambda s: f"{sum(len(c.labels) for c in col[s]) / len(col[s]):.2f}"),
        *((f"positives: {label}", lambda s, label=label: str(per_label[s][label])) for label in classes),
    ]
    lines += [f"| {name} | " + " | ".join(cell(s) for s in SPLITS) + " |" for name, cell in rows]
    lines += ["", "Files: `labels.csv` (`path,label,split`, labels joined by `;`), `images/train/`, `images/test/`, `sources.csv`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="SOURCE_ROOT")
    parser.add_argument("out", metavar="OUT_DIR")
    parser.add_argument("--train", type=int, default=500, help="train composites")
    parser.add_argument("--test", type=int, default=300, help="test composites")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=224, help="the composite's side in pixels (cells are half of it)")
    parser.add_argument("--max-uses", type=int, default=3, help="the most composites one source photo may appear in")
    args = parser.parse_args()
    source, out = Path(args.source).resolve(), Path(args.out)
    if (out / "labels.csv").exists():
        sys.exit(f"{out}: already holds labels.csv; give an empty or new folder")
    sources = {s: photos(source, s) for s in SPLITS}
    if set(sources["train"]) != set(sources["test"]):
        sys.exit(f"{source}: train/ and test/ have different classes")
    built = {s: plan(sources[s], s, n, args.seed, args.max_uses) for s, n in (("train", args.train), ("test", args.test))}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "labels.csv", "w", newline="") as fh, open(out / "sources.csv", "w", newline="") as sfh:
        labels, cells = csv.writer(fh), csv.writer(sfh)
        labels.writerow(["path", "label", "split"])
        cells.writerow(["path", "cell", "label", "source"])
        for split in SPLITS:
            (out / "images" / split).mkdir(parents=True, exist_ok=True)
            for composite in built[split]:
                rel = f"images/{split}/{composite.name}.jpg"
                render(composite, args.size).save(out / rel, quality=95)
                labels.writerow([rel, ";".join(composite.labels), split])
                for cell, label, path in composite.cells:
                    cells.writerow([rel, CELLS[cell], label, path.relative_to(source).as_posix()])
            print(f"{split}: {len(built[split])} composites", flush=True)
    (out / "README.md").write_text(readme(args, source, sources, built))
    print(f"wrote {out / 'labels.csv'} and {out / 'README.md'}")


if __name__ == "__main__":
    main()
