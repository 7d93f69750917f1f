"""The Python API's data contract (``data.user_datasets``): a user's Dataset is read once and
checked before anything trains, with one-line errors that say what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.data.sources import to_rgb_array
from transferkit.data.user_datasets import WrappedDataset
from transferkit.errors import DataError
from transferkit.imagenet import IMAGENET_MEAN, IMAGENET_STD


class Items:
    """A map-style dataset over a list of items, counting ``__getitem__`` calls."""

    def __init__(self, items, classes=None):
        self.items, self.calls = list(items), 0
        if classes is not None:
            self.classes = classes

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        self.calls += 1
        return self.items[i]


def _image(value: int = 100) -> np.ndarray:
    return np.full((8, 8, 3), value, np.uint8)


def _torchvision_normalised(rng: np.random.Generator) -> torch.Tensor:
    """What ``ToTensor()`` then ``Normalize(IMAGENET_MEAN, IMAGENET_STD)`` make of a photo."""
    pixels = torch.from_numpy(rng.random((3, 8, 8), dtype=np.float32))
    return (pixels - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]


def test_normalised_float_images_are_refused_with_the_fix():
    rng = np.random.default_rng(0)
    data = Items([(_torchvision_normalised(rng), i % 2) for i in range(4)], classes=["a", "b"])
    with pytest.raises(DataError, match=r"dataset\[0\]: float values from -\d\.\d\d to \d\.\d\d look normalised .*"
                                        r"give float images in \[0, 1\] \(ToTensor\(\) without Normalize\)"):
        WrappedDataset(data)


def test_float_images_in_0_1_are_scaled_and_0_255_floats_refused():
    assert to_rgb_array(torch.full((3, 4, 4), 0.5)).tolist()[0][0] == [128, 128, 128]
    with pytest.raises(DataError, match=r"image: float values up to 200.0; float images must be in \[0, 1\]: divide by 255"):
        to_rgb_array(np.full((4, 4, 3), 200.0, np.float32))
    with pytest.raises(DataError, match=r"an array of shape \(2, 4, 4, 3\) is a batch of images"):
        to_rgb_array(np.zeros((2, 4, 4, 3), np.uint8))


def test_string_labels_are_mapped_through_classes_or_sorted():
    declared = WrappedDataset(Items([(_image(), "dog"), (_image(), "cat"), (_image(), "dog")], classes=["dog", "cat"]))
    assert declared.classes == ["dog", "cat"] and declared.targets == [0, 1, 0]
    undeclared = WrappedDataset(Items([(_image(), "dog"), (_image(), "cat")]))
    assert undeclared.classes == ["cat", "dog"] and undeclared.targets == [1, 0]
    with pytest.raises(DataError, match=r"dataset\[1\]: label 'cta' is not one of the classes 'dog', 'cat'"):
        WrappedDataset(Items([(_image(), "dog"), (_image(), "cta")], classes=["dog", "cat"]))


@pytest.mark.parametrize("labels, message", [
    ([0, 2], r"dataset\[1\]: label 2 is out of range: 2 classes take labels 0 to 1"),
    ([0, -1], r"dataset\[1\]: label -1 is out of range"),
    ([0, 1.5], r"dataset\[1\]: label 1.5 \(float\); give an int class index or a class name"),
])
def test_labels_out_of_range_or_of_the_wrong_kind_name_the_item(labels, message):
    with pytest.raises(DataError, match=message):
        WrappedDataset(Items([(_image(), label) for label in labels], classes=["a", "b"]))


def test_negative_labels_without_classes_and_an_empty_dataset():
    with pytest.raises(DataError, match=r"dataset\[1\]: label -3 is negative"):
        WrappedDataset(Items([(_image(), 0), (_image(), -3)]))
    with pytest.raises(DataError, match=r"dataset: the dataset is empty \(len 0\)"):
        WrappedDataset(Items([]))


def test_classes_without_images_are_named_before_training(tiny_backbone, tmp_path):
    import transferkit

    names = [f"class{i}" for i in range(12)]
    data = Items([(_image(40 * (i % 2)), i % 2) for i in range(24)], classes=names)
    with pytest.raises(DataError, match=r"dataset: 10 of 12 classes have no training image: 'class2', 'class3'"):
        transferkit.finetune({"backbone": {"name": tiny_backbone, "weights": "none"}}, dataset=data, output=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_a_test_set_with_classes_in_another_order_is_mapped_by_name():
    train = WrappedDataset(Items([(_image(), 0), (_image(), 1)], classes=["cat", "dog"]))
    notes: list[str] = []
    test = WrappedDataset(Items([(_image(), 0), (_image(), 1)], classes=["dog", "cat"]), train.classes, role="test_dataset")
    notes = test.notes
    assert test.classes == ["cat", "dog"] and test.targets == [1, 0]
    assert notes == ["test_dataset.classes lists the classes in another order than the training set's; its labels are mapped by name"]
    with pytest.raises(DataError, match=r"test_dataset.classes: 'bird' are not among the training set's classes 'cat', 'dog'"):
        WrappedDataset(Items([(_image(), 0)], classes=["bird", "cat"]), train.classes, role="test_dataset")


def test_dict_items_with_image_and_label_keys():
    data = WrappedDataset(Items([{"image": _image(10), "label": 1}, {"image": _image(20), "label": 0}], classes=["a", "b"]))
    assert data.targets == [1, 0] and data.load(1)[0, 0, 0] == 20
    with pytest.raises(DataError, match=r"dataset\[0\]: a dict with keys 'img', 'target'; transferkit reads the keys 'image' and 'label'"):
        WrappedDataset(Items([{"img": _image(), "target": 0}]))


def test_every_item_is_read_once():
    data = Items([(_image(i), i % 2) for i in range(6)], classes=["a", "b"])
    wrapped = WrappedDataset(data, shorter=4)
    for i in range(len(wrapped)):
        assert wrapped.load(i).shape == (4, 4, 3)
    assert data.calls == 6
