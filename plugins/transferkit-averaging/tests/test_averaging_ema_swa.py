"""EMA and SWA against their closed forms, and the averager and TTA contracts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transferkit.testing import check_averager, check_tta
from transferkit_averaging import EMA, SWA
from transferkit_averaging.plugin import AVERAGERS, PREFIX, TTA


def _model(value: float) -> nn.Module:
    m = nn.Linear(3, 2)
    with torch.no_grad():
        m.weight.fill_(value)
        m.bias.fill_(-value)
    return m


@pytest.mark.parametrize("every", [1, 3])
def test_ema_equals_the_closed_form(every):
    model = _model(0.0)
    ema = EMA(model, decay=0.9, warmup=False, every=every)
    values = [1.0, 3.0, -2.0, 5.0, 0.5, 4.0, 2.0]
    expected = 0.0  # theta_0
    for step, v in enumerate(values, start=1):
        with torch.no_grad():
            model.weight.fill_(v)
        ema.update(model)
        if step % every == 0:
            expected = 0.9 * expected + 0.1 * v
    # d^T theta_0 + sum (1 - d) d^(T - t) theta_t over the update steps
    assert torch.allclose(ema.module.weight, torch.full_like(model.weight, expected), atol=1e-6)
    assert ema.updates == len(values) // every


def test_ema_warmup_decay_ramps_up():
    ema = EMA(_model(0.0), decay=0.999, warmup=True)
    decays = []
    for _ in range(5):
        decays.append(ema.current_decay())
        ema.update(_model(1.0))
    assert decays == pytest.approx([1 / 10, 2 / 11, 3 / 12, 4 / 13, 5 / 14])


def test_ema_buffers_copied_or_averaged():
    live = nn.BatchNorm1d(2)
    for policy, expected in (("copy", 4.0), ("average", 0.5 * 0 + 0.5 * 4.0)):
        ema = EMA(nn.BatchNorm1d(2), decay=0.5, warmup=False, buffers=policy)
        live.running_mean.fill_(4.0)
        ema.update(live)
        assert torch.allclose(ema.module.running_mean, torch.full((2,), expected))


def test_ema_state_round_trip():
    model = _model(1.0)
    ema = EMA(model, decay=0.8)
    for v in (2.0, 3.0):
        ema.update(_model(v))
    other = EMA(_model(0.0), decay=0.8)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module.weight, ema.module.weight) and other.updates == ema.updates == 2


def test_ema_rejects_bad_parameters():
    with pytest.raises(ValueError, match="decay must be in"):
        EMA(_model(0), decay=1.5)


def test_swa_is_the_uniform_average_of_epoch_ends_from_start_epoch():
    swa = SWA(_model(0.0), start_epoch=2)
    for epoch, v in enumerate([10.0, 1.0, 2.0, 6.0], start=1):
        swa.epoch_end(_model(v), epoch)
    assert torch.allclose(swa.module.weight, torch.full((2, 3), (1.0 + 2.0 + 6.0) / 3))
    assert swa.averaged == 3


def test_swa_recomputes_batchnorm_statistics_on_the_data():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    swa = SWA(model)
    swa.epoch_end(model, 1)
    torch.manual_seed(0)
    batches = [torch.randn(16, 4) * 3 + 2 for _ in range(4)]
    swa.finalize(batches)
    with torch.no_grad():
        hidden = torch.cat([swa.module[0](b) for b in batches])
    bn = swa.module[1]
    assert torch.allclose(bn.running_mean, hidden.mean(0), atol=1e-5)
    assert not bn.training and bn.momentum == 0.1


@pytest.mark.parametrize("name", sorted(AVERAGERS))
def test_every_averager_conforms_to_the_contract(name):
    """transferkit.testing's one-call check: updates, module, and a state that restores it."""
    check_averager(PREFIX + name)


@pytest.mark.parametrize("name", sorted(TTA))
def test_every_tta_policy_conforms_to_the_contract(name):
    check_tta(PREFIX + name)
