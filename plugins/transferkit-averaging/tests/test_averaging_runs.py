"""Averaging inside real (tiny) runs: raw vs averaged reported, resume keeps the averager,
top-N checkpoint averaging, snapshot cycles, ensembles and test-time augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import transferkit
from transferkit import main
from transferkit_averaging import average_state_dicts

from averaging_helpers import folder, recipe, tiny_backbone, tiny_run  # noqa: F401  (fixtures)


@pytest.mark.parametrize("averaging", [{"name": "averaging/ema", "decay": 0.9}, {"name": "averaging/swa", "start_epoch": 1}])
def test_run_reports_raw_and_averaged_side_by_side(folder, tiny_backbone, tmp_path, averaging):
    r = recipe(folder, tiny_backbone, **averaging)
    r["phases"]["finetune"]["bn"] = "train"  # SWA must then recalibrate BatchNorm
    r["train"]["final"] = "last"  # the averager's weights are the run's (no choice among WiSE-FT candidates)
    result = transferkit.finetune(r, output=tmp_path / "run", quiet=True)
    s = result.summary
    assert s["averager"] == averaging["name"] and "top1" in s["test_raw"] and "top1" in s["test"]
    assert s["phases"]["finetune"]["test_top1_averaged"] == s["test"]["top1"]
    records = transferkit.RunDir(result.run_dir).read_metrics()
    assert [r.get("weights") for r in records if r["kind"] == "test"] == [None, None, averaging["name"]]


def test_averager_survives_a_resume(folder, tiny_backbone, tmp_path):
    r = recipe(folder, tiny_backbone, name="averaging/ema", decay=0.8)
    r["train"]["checkpoint_every_steps"] = 1  # final "last" (make_recipe's): the exported weights are the EMA's
    full = transferkit.finetune(r, output=tmp_path / "full", quiet=True)

    class Stop(Exception):
        pass

    def stop(info):
        if (info["phase"], info["epoch"], info["step"]) == ("finetune", 1, 2):
            raise Stop

    with pytest.raises(Stop):
        transferkit.finetune(r, output=tmp_path / "cut", on_step=[stop], quiet=True)
    resumed = transferkit.finetune(r, resume=tmp_path / "cut", quiet=True)
    a, b = (transferkit.load(x.run_dir).model.state_dict() for x in (full, resumed))  # exported = EMA weights
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_average_equals_the_elementwise_mean(folder, tiny_backbone, tmp_path, capsys):
    r = recipe(folder, tiny_backbone)
    r["train"]["keep_checkpoints"] = 3
    result = transferkit.finetune(r, output=tmp_path / "run", quiet=True)
    kept = transferkit.RunDir(result.run_dir).kept_checkpoints()
    assert len(kept) == 3 and len({k.path for k in kept if k.path.is_file()}) == 3
    assert main(["average-checkpoints", str(result.run_dir), "--top", "2"]) == 0
    out = result.run_dir / "average-top2"
    averaged = transferkit.load(out).model.state_dict()
    states = [k.state_dict() for k in kept[:2]]
    for key, value in averaged.items():
        if value.is_floating_point():
            assert torch.allclose(value, (states[0][key] + states[1][key]) / 2, atol=1e-7)
    assert main(["evaluate", str(out)]) == 0
    assert "on 12 images" in capsys.readouterr().out
    assert main(["average-checkpoints", str(result.run_dir), "--top", "9"]) == 1


@pytest.mark.parametrize("final", ["last", "ensemble"])  # a run ending with the probe + fine-tuned ensemble keeps one network's checkpoints
def test_greedy_soup_never_lowers_validation_accuracy(folder, tiny_backbone, tmp_path, capsys, final):
    r = recipe(folder, tiny_backbone)
    r["train"]["final"] = final
    r["phases"]["extract"]["lr"] = 0.5
    r["phases"]["finetune"].update(epochs=4, lr_ratio=10.0)  # epochs far apart: some ingredients hurt
    r["train"]["keep_checkpoints"] = 5
    result = transferkit.finetune(r, output=tmp_path / "run", quiet=True)
    assert main(["average-checkpoints", str(result.run_dir), "--greedy"]) == 0
    assert "greedy soup of" in capsys.readouterr().out
    soup = result.run_dir / "greedy-soup"
    tried = json.loads((soup / "averaged_from.json").read_text())
    best_kept = transferkit.RunDir(result.run_dir).kept_checkpoints()[0]
    first = transferkit.evaluate(result.run_dir, split="val", model=_with(result.run_dir, best_kept))
    assert tried[0]["added"] and tried[0]["soup_val_top1"] == first["top1"]
    best_so_far = [e["soup_val_top1"] for e in tried if e["added"]]
    assert best_so_far == sorted(best_so_far)  # each addition kept or raised it
    assert all(e["soup_val_top1"] < max(best_so_far[: i + 1] or [0]) or e["added"] for i, e in enumerate(tried))
    assert transferkit.evaluate(soup, split="val")["top1"] == best_so_far[-1] >= first["top1"]
    added = [e for e in tried if e["added"]]
    states = [k.state_dict() for k in transferkit.RunDir(result.run_dir).kept_checkpoints() if k.path.name in {e["file"] for e in added}]
    expected = average_state_dicts(states)
    assert all(torch.allclose(v, expected[k]) for k, v in transferkit.load(soup).model.state_dict().items() if v.is_floating_point())


def _with(run_dir, kept):
    return transferkit.load(run_dir).with_weights(kept.state_dict())


def test_average_state_dicts_keeps_integer_buffers():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(7)}
    out = average_state_dicts([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and int(out["n"]) == 5


def test_snapshot_cycles_give_an_ensemble(folder, tiny_backbone, tmp_path, capsys):
    r = recipe(folder, tiny_backbone)
    r["phases"]["finetune"].update(epochs=4, cycles=2)
    result = transferkit.finetune(r, output=tmp_path / "run", quiet=True)
    snaps = sorted((result.run_dir / "snapshots").iterdir())
    assert [s.name for s in snaps] == ["cycle-1", "cycle-2"]
    assert main(["evaluate", *map(str, snaps), "--ensemble", "mean"]) == 0
    assert "ensemble of 2" in capsys.readouterr().out


def test_ensemble_is_the_mean_of_its_members_and_needs_same_classes(folder, tiny_backbone, tmp_path):
    runs = []
    for seed in (0, 1):
        r = recipe(folder, tiny_backbone)
        r["seed"] = seed
        runs.append(transferkit.finetune(r, output=tmp_path / f"seed{seed}", quiet=True).run_dir)
    images = sorted(str(p) for p in (folder / "test").rglob("*.png"))
    members = [transferkit.load(r).predict_proba(images) for r in runs]
    ensemble = transferkit.load_ensemble(runs)
    assert np.allclose(ensemble.predict_proba(images), np.mean(members, axis=0), atol=1e-7)
    manifest_file = transferkit.RunDir(runs[1]).manifest_file
    manifest = json.loads(manifest_file.read_text())
    manifest["classes"] = ["a", "b", "c"]
    (manifest_file.parent / "checksums.json").unlink()  # unrecorded, as a run from before checksums: loads unverified
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(transferkit.DataError, match="ensemble only runs trained on the same classes"):
        transferkit.load_ensemble(runs)


@pytest.fixture
def trained(tiny_run):
    """transferkit.testing's tiny run (trained once per session), loaded."""
    return transferkit.load(tiny_run)


@pytest.mark.parametrize("name,count", [
    ("averaging/flip", 2), ("averaging/5crop", 5), ("averaging/10crop", 10), ("averaging/multiscale", 6),
])
def test_tta_view_counts(trained, name, count):
    image = np.random.default_rng(0).integers(0, 255, (36, 44, 3), dtype=np.uint8)
    views = transferkit.create_tta(name).views(image, trained.resize, trained.size)
    assert len(views) == count and all(v.shape == (trained.size, trained.size, 3) for v in views)


@pytest.mark.parametrize("name", ["averaging/flip", "averaging/10crop"])
def test_tta_is_invariant_to_a_mirrored_input(trained, name):
    image = np.random.default_rng(1).integers(0, 255, (37, 45, 3), dtype=np.uint8)
    mirrored = np.ascontiguousarray(image[:, ::-1])
    a, b = trained.predict_proba([image, mirrored], tta=name)
    assert np.allclose(a, b, atol=1e-6)
    plain = trained.predict_proba([image, mirrored])
    assert not np.allclose(np.log(plain[0]), np.log(plain[1]), atol=1e-6)  # without TTA the mirror does change it


def test_evaluate_and_predict_accept_tta(trained, folder, capsys):
    assert main(["evaluate", str(trained.run_dir), "--tta", "averaging/10crop"]) == 0
    assert "with tta averaging/10crop" in capsys.readouterr().out
    assert main(["predict", str(trained.run_dir), str(folder / "test" / "red"), "--tta", "flip"]) == 0  # the old name still works
    assert main(["evaluate", str(trained.run_dir), "--tta", "11crop"]) == 1
    assert "unknown tta '11crop'; did you mean averaging/10crop" in capsys.readouterr().err
