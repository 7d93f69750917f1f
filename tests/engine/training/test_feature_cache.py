"""Phase 1 on cached features: exact for the evaluation transform, and much cheaper."""

from __future__ import annotations

import gc

import torch

from transferkit.data.loaders import EpochBatchSampler
from transferkit.engine.prepare import prepare
from transferkit.engine.training.feature_cache import FeatureCache
from transferkit.recipe_loading import load_recipe


def test_cached_features_equal_the_frozen_backbone_on_the_eval_transform(tiny_recipe):
    prepared = prepare(load_recipe(tiny_recipe))
    images = prepared.splits.train
    cache = FeatureCache.compute(prepared.model.backbone, images, prepared.eval_transform, prepared.runtime, batch_size=5)
    assert cache.features.shape == (1, len(images), prepared.model.backbone.num_features)
    prepared.model.backbone.eval()
    with torch.no_grad():
        direct = prepared.model.backbone(torch.stack([prepared.eval_transform(images.load(i)) for i in range(len(images))]))
    assert torch.allclose(cache.features[0], direct, atol=1e-6)
    assert cache.targets.tolist() == images.targets


def test_augmented_views_are_seeded_and_distinct(tiny_recipe):
    prepared = prepare(load_recipe(tiny_recipe))
    kwargs = dict(batch_size=8, views=3, seed=7)
    a = FeatureCache.compute(prepared.model.backbone, prepared.splits.train, prepared.train_transform, prepared.runtime, **kwargs)
    b = FeatureCache.compute(prepared.model.backbone, prepared.splits.train, prepared.train_transform, prepared.runtime, **kwargs)
    assert torch.equal(a.features, b.features)
    assert not torch.allclose(a.features[0], a.features[1])


def test_batches_follow_the_sampler(tiny_recipe):
    features = torch.arange(10.0)[None, :, None].repeat(1, 1, 2)
    cache = FeatureCache(features, torch.arange(10))
    sampler = EpochBatchSampler(10, 4, shuffle=True, seed=1)
    seen = torch.cat([y for _, y in cache.batches(sampler)])
    assert sorted(seen.tolist()) == list(range(10))
    assert [len(x) for x, _ in cache.batches(sampler)] == [4, 3, 3]


def test_phase1_with_and_without_cache_both_leave_the_backbone_untouched(tiny_recipe, tmp_path):
    from transferkit.engine.run import run_recipe

    for cached in (True, False):
        tiny_recipe["phases"]["extract"]["cache_features"] = cached
        tiny_recipe["phases"]["finetune"]["epochs"] = 0
        recipe = load_recipe(tiny_recipe)
        initial = prepare(recipe).model.backbone.state_dict()
        result = run_recipe(recipe, output=tmp_path / f"run-{cached}", log=lambda m: None)
        after = result.model.backbone.state_dict()
        assert all(torch.equal(initial[k], after[k]) for k in initial)


def test_above_its_budget_the_cache_is_memory_mapped_with_the_same_features_and_removed_with_it(tiny_recipe):
    prepared = prepare(load_recipe(tiny_recipe))
    args = (prepared.model.backbone, prepared.splits.train, prepared.train_transform, prepared.runtime)
    in_memory = FeatureCache.compute(*args, batch_size=5, views=2, seed=1)
    on_disk = FeatureCache.compute(*args, batch_size=5, views=2, seed=1, memory_mb=0.0)
    assert not in_memory.on_disk and on_disk.on_disk
    file = on_disk.folder / "features.npy"
    assert file.is_file() and torch.equal(on_disk.features, in_memory.features)
    n = len(on_disk)
    assert [len(x) for x, _ in on_disk.chunks(rows=7)] == ([7] * (n // 7) + [n % 7]) * 2 and on_disk.all_finite()
    del on_disk
    gc.collect()
    assert not file.parent.exists()


def test_a_run_fits_its_probe_on_a_memory_mapped_cache_to_the_same_head(tiny_recipe, tmp_path):
    import json

    import transferkit

    heads = []
    for name, budget in (("memory", 2048.0), ("disk", 0.0)):
        transferkit.finetune(tiny_recipe, output=tmp_path / name, quiet=True,
                             **{"phases.extract.feature_cache_mb": budget, "phases.finetune.epochs": 0})
        heads.append(json.loads((tmp_path / name / "summary.json").read_text())["phases"]["extract"]["probe"])
    assert heads[0]["C"] == heads[1]["C"] and heads[0]["cv_log_loss"] == heads[1]["cv_log_loss"]
