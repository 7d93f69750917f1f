"""docs/plugins.md, the plugin author's guide: it covers every hook, its quotes of the example
package (examples/acme-plugin) match the files, and its stand-alone examples of the other hooks
(``# my_plugin/...`` blocks) work: unit by unit, and together in a tiny run."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch import nn

import transferkit
from transferkit import hookspecs
from transferkit.cli import main
from transferkit.engine.run import run_recipe
from transferkit.inference import create_tta
from transferkit.plugins import get_plugins, registry
from transferkit.recipe_loading import load_recipe

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
QUOTE_PREFIX = "# examples/acme-plugin/"
SKETCH_PREFIX = "# my_plugin/"


def _blocks() -> list[tuple[str, str]]:
    """(language, body) of every fenced code block of the guide."""
    return re.findall(r"^```(\w*)\n(.*?)^```", GUIDE.read_text(), flags=re.S | re.M)


def _hooks() -> list[str]:
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]


def test_every_hook_has_a_row_a_section_and_a_worked_example() -> None:
    text = GUIDE.read_text()
    hooks = _hooks()
    assert len(hooks) == 6
    for hook in hooks:
        assert f"| `{hook}(register)` | `register(" in text, hook
        assert any(f"def {hook}(register" in body for _, body in _blocks()), f"no worked example of {hook}"
    for section in ("### Backbones", "### Augmentations", "### Averagers", "### Datasets", "### Test-time augmentation", "### Commands"):
        assert section in text


def test_quotes_of_the_example_package_match_its_files() -> None:
    quoted = set()
    for _, body in _blocks():
        first, _, rest = body.partition("\n")
        if not first.startswith(QUOTE_PREFIX):
            continue
        path = ROOT / first[2:].strip()
        assert path.is_file(), first
        source = path.read_text()
        for fragment in re.split(r"^# \.\.\.\n", rest, flags=re.M):
            assert fragment.strip("\n") in source, f"docs/plugins.md quotes {path.relative_to(ROOT)} out of date:\n{fragment}"
        quoted.add(path.relative_to(ROOT).as_posix())
    assert {"examples/acme-plugin/pyproject.toml", "examples/acme-plugin/recipe.toml",
            "examples/acme-plugin/src/transferkit_acme/plugin.py", "examples/acme-plugin/src/transferkit_acme/tinyconvnet.py",
            "examples/acme-plugin/src/transferkit_acme/posterize_noise.py"} <= quoted


@pytest.fixture
def sketches():
    """The guide's ``# my_plugin/*.py`` blocks, each run as a module and registered in-process."""
    plugins = get_plugins()
    modules: dict[str, ModuleType] = {}
    for language, body in _blocks():
        if language == "python" and body.startswith(SKETCH_PREFIX):
            stem = body.partition("\n")[0][len(SKETCH_PREFIX) :].removesuffix(".py")
            module = ModuleType(f"guide_{stem}")
            exec(compile(body, f"docs/plugins.md ({stem})", "exec"), module.__dict__)  # noqa: S102 - our own docs
            modules[stem] = module
            plugins.register(module, f"guide-{stem}")
    assert set(modules) == {"batch", "averagers", "datasets", "tta", "commands"}
    yield modules
    for stem in modules:
        plugins.unregister(f"guide-{stem}")


def test_batch_augmentation_sketch(sketches) -> None:
    aug = transferkit.create_augmentation("my/random_vflip", num_classes=3, p=1.0)
    images, targets = torch.rand(4, 3, 8, 8), torch.eye(3)[[0, 1, 2, 0]]
    out, out_targets = aug(images, targets)
    assert torch.equal(out, images.flip(2)) and out_targets is targets
    half = transferkit.create_augmentation("my/random_vflip", num_classes=3, p=0.5)
    state = half.state_dict()
    first = half(images, targets)[0]
    half.load_state_dict(state)
    assert torch.equal(half(images, targets)[0], first)  # a resumed run continues the same stream
    with pytest.raises(transferkit.PluginError, match="rejected its parameters: p: must be a probability"):
        transferkit.create_augmentation("my/random_vflip", num_classes=3, p=2.0)


def test_averager_sketch(sketches) -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    mean = transferkit.create_averager("my/running_mean", model, start=1)
    seen = []
    for step in range(4):
        with torch.no_grad():
            model[0].weight.fill_(float(step))
        mean.update(model)
        seen.append(float(step))
    assert torch.allclose(mean.module[0].weight, torch.full((2, 2), np.mean(seen[1:])))
    again = transferkit.create_averager("my/running_mean", model)
    again.load_state_dict(mean.state_dict())
    assert torch.equal(again.module[0].weight, mean.module[0].weight) and again.count == 3


def test_dataset_and_tta_sketches(sketches) -> None:
    splits = registry("dataset").get("my/stripes").factory(None, seed=0, val_fraction=0.25, per_class=8)
    assert isinstance(splits, transferkit.DatasetSplits) and splits.classes == ["horizontal", "vertical", "checks"]
    splits.check()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 6, 6)
    image, _ = splits.train[0]
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
    views = create_tta("my/updown").views(image, lambda im, shorter=None: im, 24)
    assert [v.shape for v in views] == [(24, 24, 3)] * 2
    np.testing.assert_array_equal(views[1], image[::-1][4:28, 4:28])


def test_command_sketch(sketches, tiny_backbone, capsys) -> None:
    assert main(["my-names", "tiny/"]) == 0
    assert capsys.readouterr().out.split() == ["tiny/cnn"]
    assert main(["my-names", "nothing/"]) == 1
    assert capsys.readouterr().err.strip() == (
        "transferkit: error: no backbone or augmentation starts with 'nothing/'; see `transferkit list`"
    )


def test_sketches_together_in_a_run(sketches, tiny_backbone, tmp_path) -> None:
    """The dataset source, the batch augmentation and the averager in one recipe; then TTA."""
    recipe = {
        "name": "guide", "seed": 0,
        "data": {"source": "my/stripes", "image_size": 32, "batch_size": 8, "params": {"per_class": 24}},
        "backbone": {"name": "tiny/cnn", "weights": "none"},
        "augment": {"batch": [{"name": "my/random_vflip", "p": 0.5}]},
        "averaging": {"name": "my/running_mean"},
        "phases": {"extract": {"epochs": 1, "lr": 0.05}, "finetune": {"epochs": 2, "lr_ratio": 1.0}},
        "train": {"weight_decay": 0.0, "final": "last"},  # the averager's weights are the run's: no WiSE-FT choice, no cross-fitting
    }
    result = run_recipe(load_recipe(recipe), output=tmp_path / "run", log=lambda m: None)
    assert result.test_accuracy is not None and (result.run_dir / "model.safetensors").is_file()
    assert result.summary["averager"] == "my/running_mean" and "test_top1_averaged" in result.summary["phases"]["finetune"]
    splits = registry("dataset").get("my/stripes").factory(None, per_class=4)
    probs = transferkit.load(result.run_dir).predict_proba([splits.test[0][0]], tta="my/updown")
    assert probs.shape == (1, 3) and abs(float(probs.sum()) - 1.0) < 1e-5
