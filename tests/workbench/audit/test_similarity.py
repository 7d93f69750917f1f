"""Near-duplicates (features, pixel signatures, bytes) and outlier scores."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from transferkit.workbench.audit.similarity import (
    FEATURE_SIMILARITY,
    OUTLIER_CLASS_Z,
    PIXEL_SIMILARITY,
    class_relative_z,
    duplicate_groups,
    near_duplicates,
    outlier_scores,
    pixel_signature,
    power_normalised,
    robust_z,
)

from ..audit_testdata import COLOURS, pattern_image


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    x, y = pixel_signature(a), pixel_signature(b)
    return float(max(x[0] @ y[0], x[0] @ y[1]))


def test_pixel_signatures_match_re_encoded_resized_and_mirrored_copies_only():
    rng = np.random.default_rng(0)
    image = pattern_image(COLOURS["red"], rng, size=96)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=60)
    copies = [Image.open(buffer), image.resize((64, 64), Image.BICUBIC), image.transpose(Image.FLIP_LEFT_RIGHT)]
    original = np.asarray(image)
    for copy in copies:
        assert _similarity(original, np.asarray(copy.convert("RGB"))) >= PIXEL_SIMILARITY
    other = np.asarray(pattern_image(COLOURS["red"], rng, size=96))
    assert _similarity(original, other) < PIXEL_SIMILARITY
    assert not pixel_signature(np.full((32, 32, 3), 128, np.uint8)).any()  # a flat image matches nothing


def test_near_duplicates_by_features_pixels_or_bytes():
    rng = np.random.default_rng(0)
    features = rng.random((6, 64)).astype(np.float32)
    features[1] = features[0] * 1.01  # same direction: cosine 1
    signatures = np.stack([pixel_signature(np.asarray(pattern_image(COLOURS["blue"], rng))) for _ in range(6)])
    signatures[3] = signatures[2]  # same pixels, different features
    digests = ["a", "b", "c", "d", "e", "e"]  # 4 and 5: same bytes
    pairs = near_duplicates(features, signatures, digests)
    found = {(p.first, p.second): p for p in pairs}
    assert set(found) == {(0, 1), (2, 3), (4, 5)}
    assert found[(0, 1)].evidence == "features" and found[(0, 1)].feature_similarity >= FEATURE_SIMILARITY
    assert found[(2, 3)].evidence == "pixels"
    assert found[(4, 5)].evidence == "same bytes" and found[(4, 5)].score == 1.0
    assert duplicate_groups(pairs, 6) == [[0, 1], [2, 3], [4, 5]]


def test_power_normalised_rows_are_unit_and_keep_the_sign():
    rows = power_normalised(np.array([[4.0, -9.0, 0.0], [0.0, 0.0, 0.0]]))
    assert np.allclose(rows[0], np.array([2.0, -3.0, 0.0]) / np.sqrt(13.0)) and not rows[1].any()


def test_the_image_unlike_the_others_has_the_highest_robust_z():
    rng = np.random.default_rng(0)
    centre = rng.random(32)
    features = np.maximum(centre + rng.normal(0, 0.4, size=(60, 32)), 0.0)  # non-negative, as after a ReLU
    features[17] = 0.0
    features[17, :3] = 5.0  # unlike the others
    features[18] = features[17]  # its duplicate does not hide it
    train = np.ones(60, dtype=bool)
    z = robust_z(outlier_scores(features, train, k=5), train)
    assert set(np.argsort(-z)[:2]) == {17, 18} and z[17] > 2.5
    assert np.median(z) == 0.0


def test_a_class_unlike_the_others_is_not_a_set_of_outliers_but_an_odd_image_within_it_is():
    rng = np.random.default_rng(0)
    common, distinct = rng.random(32), rng.random(32)
    features = np.maximum(common + rng.normal(0, 0.3, size=(60, 32)), 0.0)  # classes 0-4, twelve images each
    features[48:] = np.maximum(distinct * 3 + rng.normal(0, 0.3, size=(12, 32)), 0.0)  # class 4: far from the rest
    labels = np.repeat(np.arange(5), 12)
    features[3] = 0.0
    features[3, :2] = 6.0  # an odd image filed under class 0
    train = np.ones(60, dtype=bool)
    scores = outlier_scores(features, train, k=10)
    alone = robust_z(scores, train)
    assert (alone[48:] > 2.5).sum() >= 10  # the global rule alone calls the whole distinct class outliers
    within = class_relative_z(scores, labels, train)
    z = np.where(within > OUTLIER_CLASS_Z, alone, np.minimum(alone, within))  # what audit_run does
    flagged = np.flatnonzero(z > 2.5)
    assert 3 in flagged and len(flagged) <= 2 and (flagged < 48).sum() == 1  # the odd image, and at most one of class 4
    small = class_relative_z(scores, labels, train, min_images=13)
    assert np.isinf(small).all()  # no class with 13 images: nothing to compare with
