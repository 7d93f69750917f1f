"""``picking.pick``: margins, novelty against the labelled images, no near-copies in one batch."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.workbench.suggest.picking import margins, pick


def test_margins_are_top1_minus_top2():
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(margins(probs), [0.5, 0.05, 1.0])


def _directions(*angles: float) -> np.ndarray:
    return np.array([[np.cos(a), np.sin(a)] for a in angles])


def test_equally_uncertain_images_go_by_novelty_then_no_near_copy_twice():
    labelled = _directions(0.0)
    # two near-copies far from the labelled image, one image in between, one next to the labelled
    pool = _directions(1.5, 1.49, 0.8, 0.05)
    probs = np.full((4, 2), 0.5)
    picked = pick(pool, probs, labelled, 3)
    assert picked.order[0] in (0, 1)
    assert set(picked.order[:2]) != {0, 1}  # the second pick is not the first one's copy
    assert 2 in picked.order[:2]
    assert 3 not in picked.order[:2]  # the image beside a labelled one comes last


def test_equally_novel_images_go_by_uncertainty():
    labelled = np.zeros((0, 2))
    pool = _directions(0.0, 2.0, 4.0)
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3]])
    picked = pick(pool, probs, labelled, 1)
    assert picked.order.tolist() == [1]
    np.testing.assert_allclose(picked.margins, [0.1])


def test_count_larger_than_the_pool_gives_every_image_once():
    rng = np.random.default_rng(0)
    picked = pick(rng.normal(size=(5, 8)), rng.dirichlet(np.ones(3), 5), rng.normal(size=(4, 8)), 50)
    assert sorted(picked.order.tolist()) == [0, 1, 2, 3, 4]


def test_count_below_one_is_refused():
    with pytest.raises(ValueError, match="count 0"):
        pick(np.ones((2, 2)), np.full((2, 2), 0.5), np.ones((1, 2)), 0)
