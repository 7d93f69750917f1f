"""Images/s of a RandAugment training pipeline: transferkit-augment (albumentations on uint8 numpy)
against the equivalent torchvision.transforms.v2 pipeline, in one run on the same decoded photos.

    plugin:       RandomResizedCrop(224) -> HorizontalFlip -> RandAugment(2, 9) -> Cutout(0.5)
                  -> Normalize -> ToTensorV2                                 (numpy HWC uint8 in)
    torchvision:  RandomResizedCrop(224) -> RandomHorizontalFlip -> RandAugment(2, 9)
                  -> ToDtype(float32, scale) -> Normalize -> RandomErasing(p=1, area 0.25, square, 0)
                                                                              (CHW uint8 tensor in,
                                                                               or PIL with --pil)

Both sides: bilinear crops with scale (0.08, 1), RandAugment magnitude 9 on the 0..30 scale (the
same ranges), a 0.5-side square erased to the mean (Cutout clips at borders; RandomErasing keeps
the square inside). The photos are decoded once, before timing; converting each array to the
pipeline's input type (a zero-copy tensor view, or a PIL image) is timed. Single process, one
thread for torch and OpenCV by default (as in one data-loader worker); the pipelines alternate
over the repetitions and the median is reported.

    .venv/bin/python benchmarks/augment_throughput.py [--images 200] [--repeats 7] [--threads 1] [--pil]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import albumentations as A
import cv2
import numpy as np
import torch
import torchvision
from albumentations.pytorch import ToTensorV2
from PIL import Image
from torchvision.transforms import v2

from transferkit_augment import Cutout, RandAugment

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "flowers12" / "train"


def load_images(root: Path, count: int) -> list[np.ndarray]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not files:
        sys.exit(f"no images under {root}")
    step = max(1, len(files) // count)  # spread over the classes
    chosen = files[::step][:count]
    return [np.array(Image.open(f).convert("RGB")) for f in chosen]  # writable, contiguous


def plugin_pipeline(size: int) -> Callable[[np.ndarray], torch.Tensor]:
    pipe = A.Compose(
        [
            A.RandomResizedCrop(size=(size, size), scale=(0.08, 1.0), interpolation=cv2.INTER_LINEAR),
            A.HorizontalFlip(p=0.5),
            RandAugment(n=2, m=9),
            Cutout(size=0.5),
            A.Normalize(mean=MEAN, std=STD),
            ToTensorV2(),
        ],
        seed=0,
    )
    return lambda img: pipe(image=img)["image"]


def torchvision_pipeline(size: int, pil: bool) -> Callable[[np.ndarray], torch.Tensor]:
    to_input = (lambda img: Image.fromarray(img)) if pil else (lambda img: torch.from_numpy(img).permute(2, 0, 1))
    pipe = v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandAugment(num_ops=2, magnitude=9),
            *([v2.PILToTensor()] if pil else []),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=MEAN, std=STD),
            v2.RandomErasing(p=1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0),
        ]
    )
    return lambda img: pipe(to_input(img))


def images_per_second(pipeline: Callable[[np.ndarray], torch.Tensor], images: list[np.ndarray]) -> float:
    start = time.perf_counter()
    for img in images:
        out = pipeline(img)
    seconds = time.perf_counter() - start
    assert out.dtype == torch.float32 and out.ndim == 3 and out.shape[0] == 3
    return len(images) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of photos (class subfolders)")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    ap.add_argument("--pil", action="store_true", help="also time torchvision on PIL images")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    torch.manual_seed(0)
    images = load_images(args.data.resolve(), args.images)
    shapes = sorted({img.shape for img in images})
    pipelines = {"transferkit-augment (albumentations, numpy)": plugin_pipeline(args.size),
                 "torchvision.transforms.v2 (tensor)": torchvision_pipeline(args.size, pil=False)}
    if args.pil:
        pipelines["torchvision.transforms.v2 (PIL)"] = torchvision_pipeline(args.size, pil=True)

    for pipeline in pipelines.values():  # warm-up: caches, lazy imports, first-call allocations
        images_per_second(pipeline, images[:20])
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    names = list(pipelines)
    for rep in range(args.repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            rates[name].append(images_per_second(pipelines[name], images))

    print(f"augment_throughput: {len(images)} photos from {args.data.resolve()} {shapes[:3]}, output {args.size}px,"
          f" {args.threads} thread(s), {args.repeats} repetitions, median")
    print(f"  albumentations {A.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__},"
          f" OpenCV {cv2.__version__}")
    width = max(map(len, names))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name in names:
        spread = f"(min {min(rates[name]):.1f}, max {max(rates[name]):.1f})"
        print(f"  {name:<{width}}  {medians[name]:8.1f} images/s  {spread}")
    ours = medians[names[0]]
    for name in names[1:]:
        print(f"  ratio plugin / {name}: {ours / medians[name]:.2f}x")


if __name__ == "__main__":
    main()
