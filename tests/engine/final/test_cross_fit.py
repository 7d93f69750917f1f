"""Cross-fitting (train.folds): folds that partition the labelled images, a choice made on every
labelled image instead of a small validation split, the soup of the fold models, and a run that
trains its folds, records how it chose and calibrates on the out-of-fold predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from transferkit.data.sources import ArrayImages, DatasetSplits, JoinedImages
from transferkit.engine.final.choice import Candidate, choose
from transferkit.engine.final.cross_fit import AUTO_FOLDS, extra_parts, fold_count, pooled_candidates, soup
from transferkit.engine.run import run_recipe
from transferkit.recipe_loading import load_recipe
from transferkit.testing import TinyCNN, make_recipe, write_image_folder


def _images(counts: list[int]) -> ArrayImages:
    targets = [c for c, n in enumerate(counts) for _ in range(n)]
    return ArrayImages([np.zeros((4, 4, 3), np.uint8)] * len(targets), targets, [f"c{c}" for c in range(len(counts))])


def test_extra_parts_cut_the_training_split_into_disjoint_stratified_pieces():
    train = _images([20, 12, 8])
    parts = extra_parts(train, 4, seed=0)
    flat = [i for part in parts for i in part]
    assert sorted(flat) == list(range(len(train)))  # every image held out exactly once
    for part in parts:
        per_class = np.bincount([train.targets[i] for i in part], minlength=3)
        assert per_class.tolist() == [5, 3, 2]
    assert extra_parts(train, 4, seed=0) == parts and extra_parts(train, 4, seed=1) != parts


def test_extra_parts_deal_a_class_too_small_to_stratify_round_robin():
    parts = extra_parts(_images([9, 2]), 3, seed=0)
    assert sorted(i for part in parts for i in part) == list(range(11))


def _splits(train: list[int], val: list[int]) -> DatasetSplits:
    return DatasetSplits(_images(train), _images(val), None)


def test_fold_count_cross_fits_small_validation_splits_only():
    assert fold_count("auto", _splits([100, 100], [10, 10]), distributed=False) == AUTO_FOLDS
    assert fold_count("auto", _splits([1000, 1000], [100, 100]), distributed=False) == 1
    assert fold_count(3, _splits([1000, 1000], [100, 100]), distributed=False) == 3
    assert fold_count("auto", _splits([100, 100], [10, 10]), distributed=True) == 1
    assert fold_count("auto", _splits([100, 2], [10, 1]), distributed=False) == 1  # a fold would lack class 1
    assert fold_count(1, _splits([100, 100], [10, 10]), distributed=False) == 1
    # the folders where cross-fitting was measured to help hold 50-60 validation images; flowers12 holds 72
    assert fold_count("auto", _splits([280, 280], [28, 28]), distributed=False) == AUTO_FOLDS  # 56, like RSSCN7
    assert fold_count("auto", _splits([324, 324], [36, 36]), distributed=False) == 1  # 72, like flowers12


def test_joined_images_read_each_part_in_order():
    a, b = _images([2, 1]), _images([1, 2])
    joined = JoinedImages([a, b])
    assert joined.targets == [0, 0, 1, 0, 1, 1] and len(joined) == 6 and joined.classes == a.classes


def test_soup_is_the_uniform_mean_of_floating_tensors():
    torch.manual_seed(0)
    states = [TinyCNN().state_dict() for _ in range(3)]
    mixed = soup(states)
    for key, value in mixed.items():
        if value.is_floating_point():
            assert torch.allclose(value, sum(s[key] for s in states) / 3)
        else:
            assert torch.equal(value, states[0][key])


def test_the_choice_on_every_labelled_image_picks_what_a_small_validation_split_misses():
    """A generated case: 300 labelled images, the first 20 of them the validation split. On those
    20 the probe is right 20 times and the fine-tuned model 17 times; on all 300 the fine-tuned
    model is right on 285 and the probe on 240. Validation alone keeps the probe; the pooled
    out-of-fold figures pick the fine-tuned model, the better one on the rest of the data."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=300)

    def logits(right: np.ndarray) -> torch.Tensor:
        z = np.full((300, 4), -2.0)
        wrong = (y + 1) % 4
        z[np.arange(300), np.where(right, y, wrong)] = 2.0
        return torch.as_tensor(z)

    probe_right = np.zeros(300, bool)
    probe_right[:20] = True
    probe_right[20 + rng.permutation(280)[:220]] = True
    ft_right = np.ones(300, bool)
    ft_right[[3, 7, 11]] = False
    ft_right[20 + rng.permutation(280)[:12]] = False
    pooled = {0.0: logits(probe_right), 1.0: logits(ft_right)}
    on_val = [Candidate(c.name, c.alpha, None, val=dict(c.val)) for c in pooled_candidates({a: z[:20] for a, z in pooled.items()}, y[:20])]
    assert choose(on_val, n_val=20).name == "probe"
    candidates = pooled_candidates(pooled, y)
    assert [round(c.val["top1"] * 300) for c in candidates] == [240, 285]
    assert choose(candidates, n_val=300).name == "finetuned"


@pytest.mark.parametrize("folds", [3])
def test_a_run_cross_fits_its_folds_and_records_how_it_chose(tmp_path, tiny_backbone, folds):
    root = write_image_folder(tmp_path / "images", {"train": 24, "test": 4})
    recipe = make_recipe(root, tiny_backbone, phases={"extract": {"C": None}, "finetune": {"epochs": 1}},
                         train={"folds": folds, "final": "auto", "calibrate": "always"})
    result = run_recipe(load_recipe(recipe), output=tmp_path / "run", log=lambda m: None)
    final = result.summary["final"]
    pool = 24 * 3
    assert final["folds"] == folds and final["chosen_on"] == f"{pool} out-of-fold predictions of {folds} folds"
    assert set(final["candidates"]) == {"probe", "wise-0.25", "wise-0.5", "wise-0.75", "finetuned"}
    for i in range(1, folds):
        fold = tmp_path / "run" / "folds" / f"fold-{i}"
        assert (fold / "checkpoints" / "last.pt").is_file()
        records = [json.loads(line) for line in (fold / "metrics.jsonl").read_text().splitlines()]
        assert {r["phase"] for r in records} == {"extract", "finetune"}
        held = pool - records[-1]["images"]  # each fold trains on the pool less its part
        assert 0 < held < pool
    assert result.summary["calibration"]["fitted_on"] == "out-of-fold"
    assert result.summary["calibration"]["val"]["n"] == pool
    assert result.summary["test"]["n"] == 12
