"""The probe's feature scaling, chosen by cross-validation beside C: per-feature standardisation
where it helps, each readout block scaled as a whole where it does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.engine.training.probe import block_scale, fit_probe


def _case(signal_std: float, noise_std: float, n_per_class: int, seed: int = 0, signal: int = 8, noise: int = 120):
    """Two classes: ``signal`` features whose class means differ (scaled by ``signal_std``), then
    ``noise`` features of pure noise at ``noise_std``; train and test drawn alike."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2, signal)) * 1.2

    def draw(n: int):
        y = np.repeat(np.arange(2), n)
        informative = (centres[y] + rng.normal(size=(len(y), signal))) * signal_std
        rest = rng.normal(size=(len(y), noise)) * noise_std
        return torch.from_numpy(np.hstack([informative, rest]).astype(np.float32)), torch.from_numpy(y)

    return draw(n_per_class), draw(500)


def _accuracy(fit, x, y) -> float:
    return float(((x @ fit.weight.T + fit.bias).argmax(1) == y).float().mean())


def test_block_scale_gives_each_block_the_rms_of_its_deviations():
    std = torch.tensor([1.0, 7.0, 3.0, 4.0, 0.5], dtype=torch.float64)
    scaled = block_scale(std, [2, 3])
    assert torch.allclose(scaled[:2], torch.full((2,), 5.0, dtype=torch.float64))
    assert torch.allclose(scaled[2:], torch.full((3,), float(np.sqrt((9 + 16 + 0.25) / 3)), dtype=torch.float64))
    assert torch.allclose(block_scale(std, None), std.pow(2).mean().sqrt().expand(5))
    with pytest.raises(ValueError, match="do not partition 5 features"):
        block_scale(std, [2, 2])


@pytest.mark.parametrize("signal_std, noise_std, expected", [
    (1.0, 0.02, "block"),  # many quiet noise features: standardising each blows them up to the signal's size
    (0.02, 1.0, "feature"),  # a quiet signal among loud noise: standardising each brings it up
])
def test_cross_validation_keeps_the_scaling_that_predicts_held_out_images_better(signal_std, noise_std, expected):
    (x, y), (xt, yt) = _case(signal_std, noise_std, n_per_class=20)
    chosen = fit_probe(x, y, 2)
    alone = {s: fit_probe(x, y, 2, scalings=(s,)) for s in ("feature", "block")}
    assert chosen.scaling == expected
    assert set(chosen.cv_scaling_log_loss) == {"feature", "block"}
    assert chosen.cv_scaling_log_loss[expected] == min(chosen.cv_scaling_log_loss.values())
    other = "feature" if expected == "block" else "block"
    assert _accuracy(chosen, xt, yt) == _accuracy(alone[expected], xt, yt)
    assert _accuracy(chosen, xt, yt) > _accuracy(alone[other], xt, yt)
    assert chosen.summary()["scaling"] == expected


def test_the_head_reads_raw_features_whatever_the_scaling():
    (x, y), _ = _case(1.0, 0.02, n_per_class=20)
    blocks = [8, 60, 60]
    fit = fit_probe(x, y, 2, blocks=blocks, scalings=("block",))
    mean = x.double().mean(0)
    std = block_scale(x.double().std(0), blocks)
    refit = fit_probe(((x.double() - mean) / std).float(), y, 2, Cs=(fit.C,), scalings=("block",), blocks=blocks)
    # the same model on pre-scaled inputs: logits agree on every image
    assert torch.allclose(x @ fit.weight.T + fit.bias, ((x.double() - mean) / std).float() @ refit.weight.T + refit.bias, atol=2e-3)


def test_one_C_means_no_cross_validation_and_the_first_scaling():
    (x, y), _ = _case(1.0, 0.02, n_per_class=20)
    fit = fit_probe(x, y, 2, Cs=(1.0,))
    assert (fit.folds, fit.scaling, fit.cv_scaling_log_loss) == (1, "feature", {})
    assert fit_probe(x, y, 2, Cs=(1.0,), scalings=("block",)).scaling == "block"
    with pytest.raises(ValueError, match="each must be one of feature, block"):
        fit_probe(x, y, 2, scalings=("whitened",))
