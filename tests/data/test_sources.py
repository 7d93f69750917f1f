"""Data sources and splits: ImageFolder layouts, CSV manifests, digits, stratified seeded splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.builtin.datasets import csv_manifest, digits, imagefolder
from transferkit.data.sources import stratified_split, to_rgb_array
from transferkit.data.user_datasets import WrappedDataset
from transferkit.errors import DataError
from transferkit.testing import write_image_folder


def test_imagefolder_with_train_and_test(image_folder):
    splits = imagefolder(str(image_folder), seed=0, val_fraction=0.25)
    assert splits.classes == ["blue", "green", "red"]
    assert len(splits.train) == 27 and len(splits.val) == 9 and len(splits.test) == 12
    assert Counter(splits.val.targets) == {0: 3, 1: 3, 2: 3}  # stratified
    image, label = splits.train[0]
    assert image.dtype == np.uint8 and image.shape == (40, 40, 3)


def test_single_folder_is_split_stratified_and_seeded(tmp_path):
    root = write_image_folder(tmp_path, {"all": 10}) / "all"
    a = imagefolder(str(root), seed=3, val_fraction=0.2, test_fraction=0.3)
    b = imagefolder(str(root), seed=3, val_fraction=0.2, test_fraction=0.3)
    assert [a.test.describe(i) for i in range(len(a.test))] == [b.test.describe(i) for i in range(len(b.test))]
    assert Counter(a.test.targets) == {0: 3, 1: 3, 2: 3}
    assert len(a.train) + len(a.val) + len(a.test) == 30


def test_empty_class_folder_is_named(image_folder):
    (image_folder / "train" / "purple").mkdir()
    with pytest.raises(DataError, match=r"purple: class folder holds no images"):
        imagefolder(str(image_folder))


def test_csv_manifest_with_split_column(image_folder, tmp_path):
    rows = ["path,label,split"]
    for split in ("train", "test"):
        for f in sorted((image_folder / split).rglob("*.png")):
            rows.append(f"{f.relative_to(image_folder)},{f.parent.name},{split}")
    manifest = image_folder / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    splits = csv_manifest(str(manifest), val_fraction=0.25)
    assert splits.classes == ["blue", "green", "red"] and len(splits.test) == 12
    assert splits.train[0][0].shape == (40, 40, 3)


def test_digits_ship_with_scikit_learn_and_render_as_rgb():
    splits = digits(seed=0, val_fraction=0.1, size=24)
    assert len(splits.classes) == 10
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    image, _ = splits.train[0]
    assert image.shape == (24, 24, 3) and image.dtype == np.uint8 and image.max() > 200


def test_to_rgb_array_accepts_common_inputs():
    gray = Image.fromarray(np.full((5, 6), 100, np.uint8))
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent: composited on white
    assert to_rgb_array(gray).shape == (5, 6, 3)
    assert to_rgb_array(rgba)[0, 0].tolist() == [255, 255, 255]
    assert to_rgb_array(np.zeros((3, 8, 8), np.float32)).shape == (8, 8, 3)
    assert to_rgb_array(np.ones((8, 8), np.float32)).max() == 255


def test_wrapped_dataset_and_split():
    class Toy:
        classes = ["a", "b"]

        def __len__(self):
            return 20

        def __getitem__(self, i):
            return np.full((8, 8, 3), i, np.uint8), i % 2

    wrapped = WrappedDataset(Toy())
    train, held = stratified_split(wrapped, 0.2, seed=0)
    assert len(train) == 16 and Counter(held.targets) == {0: 2, 1: 2}


def test_a_split_too_small_for_every_class_keeps_each_class_training_and_says_which_get_none(tmp_path):
    """500 classes of 2 images: 200 test and 60 validation images cannot cover every class. Each class
    keeps a training image (the old unstratified split emptied some), the held-out images are one per
    class, and a note names the classes without one."""
    root = tmp_path / "many"
    pixel = Image.new("RGB", (4, 4), (90, 90, 90))
    for c in range(500):
        (root / f"c{c:03d}").mkdir(parents=True)
        for i in range(2):
            pixel.save(root / f"c{c:03d}" / f"{i}.png")
    splits = imagefolder(str(root), seed=0, val_fraction=0.1)
    splits.check("data.root")
    counts = splits.counts()
    assert min(counts["train"]) == 1 and max(counts["test"]) == 1 and max(counts["val"]) == 1
    assert (sum(counts["test"]), sum(counts["val"])) == (200, 60)  # 0.1 of the 600 images of classes that can give one
    assert "200 test images for 500 classes: 300 class(es) get none ('c" in " | ".join(splits.notes)
    assert "60 validation images for 500 classes: 240 class(es) get none" in " | ".join(splits.notes)


def test_the_error_for_a_class_without_training_images_still_has_the_counts(tmp_path):
    root = write_image_folder(tmp_path / "images", {"train": 3, "val": 2})
    for f in (root / "train" / "red").iterdir():
        f.unlink()
    (root / "train" / "red").rmdir()
    (root / "train" / "red").mkdir()
    Image.new("RGB", (8, 8)).save(root / "train" / "red" / "x.png")
    splits = imagefolder(str(root))
    splits.train = splits.train.subset([i for i, t in enumerate(splits.train.targets) if splits.classes[t] != "red"])
    with pytest.raises(DataError) as info:
        splits.check("data.root")
    text = str(info.value)
    assert text.startswith("data.root: 1 of 3 classes have no training image after the split ('red': val 2)"), text
    assert "lower data.val_fraction" in text and "\n" not in text


def _classes(root: Path, sizes: dict[str, int]) -> Path:
    for name, n in sizes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (4, 4), (10 * i, 0, 0)).save(root / name / f"{i}.png")
    return root


def test_a_class_of_one_image_trains_and_the_others_keep_their_share(tmp_path):
    root = _classes(tmp_path / "one", {"lone": 1, "a": 10, "b": 10})
    splits = imagefolder(str(root), seed=0, val_fraction=0.1, test_fraction=0.2)
    counts = splits.counts()
    assert splits.classes == ["a", "b", "lone"]
    assert counts["train"][2] == 1 and counts["test"][2] == 0 and counts["val"][2] == 0
    assert counts["test"][:2] == [2, 2] and counts["val"][:2] == [1, 1]
    notes = [n for n in splits.notes if "single image" in n]
    assert notes == ["1 class(es) have a single image to split ('lone'): it trains, so no test or validation image of them;"
                     " add images"]


def test_fewer_held_out_images_than_classes_gives_no_class_twice_its_share(tmp_path):
    root = _classes(tmp_path / "six", {f"k{i}": 3 for i in range(6)})
    for seed in range(5):
        notes: list[str] = []
        train, test = stratified_split(imagefolder(str(root), val_fraction=0.0, test_fraction=0.0).train, 0.2, seed, notes, "test")
        held = Counter(test.targets)
        assert len(test) == 4 and max(held.values()) == 1, held  # ceil(0.2 * 18) = 4: one each for 4 of the 6 classes
        unheld = ", ".join(repr(f"k{i}") for i in range(6) if i not in held)
        assert notes == [f"4 test images for 6 classes: 2 class(es) get none ({unheld}); raise the test fraction or add images"]
        assert sorted(train.targets + test.targets) == sorted(3 * list(range(6)))


def test_hidden_folders_and_unreadable_formats_are_counted_not_silent(tmp_path):
    root = write_image_folder(tmp_path / "images", {"train": 3, "test": 1})
    red = root / "train" / "red"
    (red / ".thumbnails").mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8)).save(red / ".thumbnails" / f"t{i}.png")
    Image.new("RGB", (8, 8)).save(red / "._red_train_0.png", format="PNG")  # macOS resource fork
    (red / "IMG_0001.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    splits = imagefolder(str(root))
    files = [splits.train.describe(i) for i in range(len(splits.train))] + [splits.val.describe(i) for i in range(len(splits.val))]
    assert len(files) == 9 and not any("/." in f for f in files)
    notes = " | ".join(splits.notes)
    assert "skipped 3 hidden folder(s) and file(s)" in notes
    assert "skipped 1 .heic file(s) (install pillow-heif to read them)" in notes
