"""transferkit.testing's one-call conformance checks: a conforming component passes, and each
mistake is named in one line with the component and its plugin."""

from __future__ import annotations

import copy

import albumentations as A
import numpy as np
import pytest
from torch import nn

from transferkit.testing import (
    TinyCNN,
    check_averager,
    check_backbone,
    check_batch_augmentation,
    check_image_augmentation,
    check_tta,
    plugin,
    registered,
    registered_backbone,
    tiny_cnn,
)


def test_a_conforming_backbone_passes_and_is_returned(tiny_backbone):
    assert isinstance(check_backbone(tiny_backbone, width=4), TinyCNN)


class HalfStaged(TinyCNN):
    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([self.stage1])  # the stem in no stage


def test_stages_that_leave_parameters_out_are_named():
    with registered_backbone("half/cnn", lambda pretrained=False: HalfStaged(), "half-plugin"), pytest.raises(AssertionError) as info:
        check_backbone("half/cnn")
    assert str(info.value).startswith("backbone 'half/cnn' (plugin 'half-plugin') has stages that leave out 3 parameters"
                                      " (e.g. ['stem.0.weight', 'stem.1.weight'])")


def test_a_factory_building_another_module_each_time_is_named():
    widths = iter([4, 8])
    with registered_backbone("drift/cnn", lambda pretrained=False: tiny_cnn(width=next(widths)), "drift"), \
            pytest.raises(AssertionError, match="built a different module from the same parameters"):
        check_backbone("drift/cnn")


class GlobalNoise(A.ImageOnlyTransform):
    def apply(self, img, **params):
        return np.clip(img + np.random.randint(0, 50, img.shape), 0, 255).astype(np.uint8)  # numpy's global generator


def _augmentations(register) -> None:
    register("check/global_noise", lambda p=1.0: GlobalNoise(p=p))
    register("check/hflip", lambda p=1.0: A.HorizontalFlip(p=p))
    register("check/halves", lambda num_classes: (lambda images, targets: (images.half(), targets)), kind="batch")
    register("check/smooth", lambda num_classes, eps=0.1: (lambda images, targets: (images, targets * (1 - eps))), kind="batch")


def test_image_augmentations_must_be_reproducible_from_the_seed():
    with registered(plugin(register_augmentations=_augmentations), "aug-check"):
        check_image_augmentation("check/hflip")
        with pytest.raises(AssertionError, match=r"^augmentation 'check/global_noise' \(plugin 'aug-check'\) gave another image"):
            check_image_augmentation("check/global_noise")


@pytest.mark.parametrize("name, said", [
    ("check/halves", r"returned \(4, 3, 16, 16\) torch.float16 for \(4, 3, 16, 16\) torch.float32"),
    ("check/smooth", "returned targets whose rows do not sum to 1"),
])
def test_batch_augmentations_keep_shapes_dtypes_and_probabilities(name, said):
    with registered(plugin(register_augmentations=_augmentations), "aug-check"), pytest.raises(AssertionError, match=said):
        check_batch_augmentation(name)


class Forgetful:
    """Keeps the last weights rather than a mean, and forgets them in its state_dict."""

    def __init__(self, model: nn.Module) -> None:
        self.module = copy.deepcopy(model)

    def update(self, model: nn.Module) -> None:
        self.module.load_state_dict(model.state_dict())

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Crops:
    def __init__(self, dtype: str = "uint8") -> None:
        self.dtype = dtype

    def views(self, image, resize, size):
        resized = resize(image)
        return [resized[:size, :size].astype(self.dtype)]


def _components(register) -> None:
    register("check/forgetful", Forgetful)


def _policies(register) -> None:
    register("check/crops", Crops)


def test_an_averager_that_does_not_restore_its_state_is_named():
    with registered(plugin(register_averagers=_components), "avg-check"), pytest.raises(AssertionError) as info:
        check_averager("check/forgetful")
    assert str(info.value) == ("averager 'check/forgetful' (plugin 'avg-check') loaded from its state_dict() does not hold the"
                               " same weights: a resumed run would differ")


def test_tta_views_must_be_uint8_crops_of_the_size():
    with registered(plugin(register_tta=_policies), "tta-check"):
        assert isinstance(check_tta("check/crops"), Crops)
        with pytest.raises(AssertionError, match=r"gave views \[\('float32', \(32, 32, 3\)\)\]: want uint8 arrays of \(32, 32, 3\)"):
            check_tta("check/crops", dtype="float32")


def test_the_built_in_components_conform():
    check_image_augmentation("rotate", limit=10.0)
    assert check_backbone("timm/resnet18", input_size=(3, 32, 32)).num_features == 512
