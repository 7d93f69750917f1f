"""``predict``'s activation (issue 26): softmax by default, exactly as before; ``"sigmoid"`` gives each
label's own probability (rows need not sum to 1), averaged over test-time views as sigmoids; and
single-label metrics refuse a multi-label model's probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.data.preprocessing import Preprocessing
from transferkit.data.sources import ArrayImages
from transferkit.engine.evaluation.predict import predict
from transferkit.errors import DataError
from transferkit.models.classifier import Classifier
from transferkit.testing import tiny_cnn

LABELS = ["a", "b", "c", "d"]


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = Classifier(tiny_cnn(), LABELS).eval()
    with torch.no_grad():
        model.head.weight.normal_(0.0, 3.0)
    rng = np.random.default_rng(0)
    images = ArrayImages([rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(6)], [0] * 6, LABELS)
    return model, images, Preprocessing(image_size=32, resize_shorter_side=36, mean=(0.5,) * 3, std=(0.25,) * 3)


def _logits(model, images, preprocess) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.stack([preprocess(images.load(i)) for i in range(len(images))]))


def test_sigmoid_gives_each_label_its_own_probability_and_softmax_stays_the_default(setup):
    model, images, preprocess = setup
    logits = _logits(model, images, preprocess)
    plain = predict(model, images, preprocess)
    assert plain.activation == "softmax"
    np.testing.assert_allclose(plain.probs, logits.softmax(-1).numpy(), atol=1e-6)
    multi = predict(model, images, preprocess, activation="sigmoid")
    assert multi.activation == "sigmoid"
    np.testing.assert_allclose(multi.probs, torch.sigmoid(logits).numpy(), atol=1e-6)
    np.testing.assert_allclose(multi.logits, plain.logits)
    assert np.abs(multi.probs.sum(axis=1) - 1).max() > 0.1  # not a distribution over labels
    np.testing.assert_allclose(multi.with_temperature(2.0).probs, torch.sigmoid(logits / 2).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="activation 'relu': choose one of softmax, sigmoid"):
        predict(model, images, preprocess, activation="relu")


def test_test_time_views_average_sigmoid_probabilities(setup):
    model, images, preprocess = setup

    def flipped(image):
        x = preprocess(image)
        return torch.stack([x, x.flip(-1)])

    with torch.no_grad():
        views = [model(flipped(images.load(i))) for i in range(len(images))]
    expected = np.stack([torch.sigmoid(v).mean(0).numpy() for v in views])
    got = predict(model, images, flipped, activation="sigmoid")
    np.testing.assert_allclose(got.probs, expected, atol=1e-6)
    assert got.logits is None
    not_logit_mean = np.stack([torch.sigmoid(v.mean(0)).numpy() for v in views])
    assert np.abs(got.probs - not_logit_mean).max() > 1e-4  # the mean of the sigmoids, not the sigmoid of the mean


def test_single_label_metrics_refuse_multilabel_probabilities(setup):
    model, images, preprocess = setup
    assert "top1" in predict(model, images, preprocess).metrics()
    with pytest.raises(DataError, match="multi-label model's per-label probabilities: single-label metrics"):
        predict(model, images, preprocess, activation="sigmoid").metrics()
