"""Which rejection score tells "none of these" images from the classes better: the calibrated
maximum probability (what transferkit uses) or the k-NN distance to the training images'
features (Sun et al., "Out-of-distribution detection with deep nearest neighbors", ICML 2022)?

    python benchmarks/rejection.py RUN_DIR --unknown DIR

RUN_DIR: a finished run (its recipe's splits are re-read); DIR: images of classes the run never
saw. For each score: the AUROC of test (in-distribution) against DIR, and, at the threshold that
rejects 5% of the validation images, the test false-rejection rate, the accuracy on the accepted
test images and the fraction of DIR rejected. One backbone pass per image gives both the
features and the logits.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import transferkit
from transferkit.data.sources import IMAGE_EXTENSIONS, FileImages
from transferkit.engine.final.calibration import softmax
from transferkit.engine.evaluation.predict import inference_runtime
from transferkit.engine.training.feature_cache import FeatureCache
from transferkit.engine.final.rejection import auroc
from transferkit.engine.rundir.run_dir import RunDir
from transferkit.engine.prepare import build_splits
from transferkit.recipe_loading import load_recipe

RATE = 0.05


def features_and_logits(model, images) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    backbone = model.model.backbone
    cache = FeatureCache.compute(backbone, images, model.preprocessing, inference_runtime(model.model), batch_size=64)
    features = cache.features[0]
    with torch.no_grad():
        logits = model.model.forward_head(features.to(next(model.model.parameters()).device)).float().cpu().numpy()
    return features.numpy(), logits, np.asarray(images.targets)


def knn_scores(train: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Cosine similarity of each query's L2-normalised features to its k-th nearest training image."""
    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    sim = unit(queries) @ unit(train).T
    return -np.partition(-sim, k - 1, axis=1)[:, k - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--unknown", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    model = transferkit.load(args.run_dir)
    splits = build_splits(load_recipe(RunDir(args.run_dir).recipe_file))
    files = sorted(f for f in args.unknown.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
    unknown_images = FileImages(files, [0] * len(files), model.classes)
    sets = {name: features_and_logits(model, images) for name, images in
            (("train", splits.train), ("val", splits.val), ("test", splits.test), ("unknown", unknown_images))}
    t = model.temperature
    correct = softmax(sets["test"][1]).argmax(1) == sets["test"][2]
    print(f"{args.run_dir}: T = {t:.3f}; {len(splits.train)} train, {len(splits.val)} val, {len(splits.test)} test,"
          f" {len(files)} unknown images; test accuracy {correct.mean():.4f}")
    scores = {"max probability (calibrated)": lambda name: softmax(sets[name][1], t).max(1),
              "max probability (raw)": lambda name: softmax(sets[name][1]).max(1)}
    for k in (1, 5, 10, 20, 50):
        scores[f"k-NN cosine, k = {k}"] = lambda name, k=k: knn_scores(sets["train"][0], sets[name][0], k)
    print(f"{'score':<30} {'AUROC':>7} {'test FRR':>9} {'acc accepted':>13} {'unknown rejected':>17}")
    for label, score in scores.items():
        val, test, unknown = score("val"), score("test"), score("unknown")
        threshold = np.quantile(val, RATE)
        accepted = test >= threshold
        print(f"{label:<30} {auroc(test, unknown):7.4f} {1 - accepted.mean():9.3f} {correct[accepted].mean():13.4f}"
              f" {(unknown < threshold).mean():17.3f}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
