"""The ``webdataset`` source: tar shards in WebDataset's layout, their labels and classes, their
splits, a bad shard in one line naming it, and a run trained on shards."""

from __future__ import annotations

import gzip
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.builtin.shard_writer import write_shards
from transferkit.builtin.tar_shards import webdataset
from transferkit.engine.preflight.data_checks import check_data
from transferkit.errors import DataError
from transferkit.recipe_loading import load_recipe
from transferkit.testing import write_recipe

from ..data.test_tar_shards import numbered_shards, png, write_tar


def sample(key: str, value: int, label: str, ext: str = "cls") -> list[tuple[str, bytes]]:
    return [(f"{key}.png", png(value)), (f"{key}.{ext}", label.encode())]


def one_line_error(root: Path | None, *expected: str, **params) -> str:
    with pytest.raises(DataError) as caught:
        webdataset(None if root is None else str(root), **params)
    message = str(caught.value)
    assert "\n" not in message and all(e in message for e in expected), message
    return message


def test_train_val_test_folders_and_classes_txt(tmp_path):
    numbered_shards(tmp_path / "train", (10, 8))
    write_tar(tmp_path / "val" / "v.tar", sample("v0", 1, "0") + sample("v1", 2, "2") + sample("v2", 3, "1"))
    write_tar(tmp_path / "test" / "t.tar", sample("t0", 4, "2") + [("t0.json", b"{}")])  # other members left alone
    (tmp_path / "classes.txt").write_text("cat\ndog\nemu\n\n")
    splits = webdataset(str(tmp_path))
    assert splits.classes == ["cat", "dog", "emu"] and splits.notes == []
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 3, 1)
    assert splits.train.targets == [k % 3 for k in range(18)] and splits.test.targets == [2]
    assert splits.train.describe(12) == f"{tmp_path / 'train' / 'shard-000001.tar'}:000012.png"
    image, label = splits.test[0]
    assert image.shape == (4, 4, 3) and int(image[0, 0, 0]) == 4 and label == 2
    splits.check()


def test_without_val_shards_validation_is_held_out_of_train_stratified(tmp_path):
    numbered_shards(tmp_path / "train", (12, 12))
    splits = webdataset(str(tmp_path), val_fraction=0.25)
    assert splits.classes == ["0", "1", "2"] and splits.test is None
    assert Counter(splits.val.targets) == {0: 2, 1: 2, 2: 2} and len(splits.train) == 18
    names = {s.describe(i) for s in (splits.train, splits.val) for i in range(len(s))}
    assert len(names) == 24


def test_shards_in_one_folder_are_split_like_one_image_folder(tmp_path):
    numbered_shards(tmp_path, (15, 15))
    a = webdataset(str(tmp_path), seed=3, val_fraction=0.2, test_fraction=0.2)
    b = webdataset(str(tmp_path), seed=3, val_fraction=0.2, test_fraction=0.2)
    assert [a.test.describe(i) for i in range(len(a.test))] == [b.test.describe(i) for i in range(len(b.test))]
    everything = [s.load(i)[0, 0, 0] for s in (a.train, a.val, a.test) for i in range(len(s))]
    assert sorted(int(v) for v in everything) == list(range(30))  # each sample in one split, once
    assert Counter(a.test.targets) == {0: 2, 1: 2, 2: 2}


def test_labels_without_classes_txt(tmp_path):
    write_tar(tmp_path / "train" / "a.tar", sample("a", 1, "10") + sample("b", 2, "2") + sample("c", 3, "10"))
    splits = webdataset(str(tmp_path), val_fraction=0)
    assert splits.classes == ["2", "10"] and splits.train.targets == [1, 0, 1]  # sorted as numbers
    write_tar(tmp_path / "names" / "train" / "a.tar", sample("a", 1, "tulip", "txt") + sample("b", 2, " daisy\n", "txt"))
    splits = webdataset(str(tmp_path / "names"), val_fraction=0, label="txt")
    assert splits.classes == ["daisy", "tulip"] and splits.train.targets == [1, 0]


def test_hidden_members_and_members_of_no_sample_are_counted_in_a_note(tmp_path):
    shard = write_tar(tmp_path / "train" / "a.tar", sample("a", 1, "0") + [("._a.png", b"x"), ("meta.json", b"{}")] + sample("b", 2, "1"))
    splits = webdataset(str(tmp_path), val_fraction=0)
    assert len(splits.train) == 2 and splits.notes == [f"{shard}: left out 2 member(s) of no sample (no image and no .cls label,"
                                                       " or a hidden name)"]


def test_no_shards_names_the_layout_expected(tmp_path):
    one_line_error(tmp_path, f"{tmp_path}: no .tar shards", f"{tmp_path}/train/*.tar")
    (tmp_path / "train").mkdir()
    one_line_error(tmp_path, f"{tmp_path / 'train'}: no .tar shards")
    one_line_error(tmp_path / "absent", "is not a folder", "train/*.tar")
    one_line_error(None, "data.root", "needs the folder of the shards")


def test_a_gzip_compressed_shard_is_named_with_the_fix(tmp_path):
    shard = numbered_shards(tmp_path / "train", (3,))[0]
    shard.write_bytes(gzip.compress(shard.read_bytes()))  # named .tar, compressed
    one_line_error(tmp_path, f"{shard}: gzip-compressed", "uncompress it (gunzip)")
    shard.rename(tmp_path / "train" / "shard.tar.gz")
    one_line_error(tmp_path, f"{tmp_path / 'train' / 'shard.tar.gz'}: a compressed shard", "uncompress them")


def test_a_file_that_is_not_a_tar_is_named(tmp_path):
    numbered_shards(tmp_path / "train", (3,))
    bad = tmp_path / "train" / "notes.tar"
    bad.write_text("these are my notes, not a tar\n" * 40)
    one_line_error(tmp_path, f"{bad}: not a tar file", "uncompressed POSIX tar")


def _cuts(shard: Path) -> dict[str, int]:
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
    last = members[-1]
    return {"inside an image": members[-2].offset_data + 20, "inside a header": members[-1].offset + 100,
            "after the last member": last.offset_data + -(-last.size // 512) * 512}


@pytest.mark.parametrize("where", ["inside an image", "inside a header", "after the last member"])
def test_a_truncated_shard_is_named(tmp_path, where):
    shards = numbered_shards(tmp_path / "train", (4, 4))
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: _cuts(shards[1])[where]])
    message = one_line_error(tmp_path, f"{shards[1]}: truncated", "after '00000", "copy or write the shard again")
    assert str(shards[0]) not in message


def test_an_image_without_a_label_names_the_shard_and_the_key(tmp_path):
    shard = write_tar(tmp_path / "train" / "a.tar", sample("000001", 1, "0") + [("000002.jpg", png(2))] + sample("000003", 3, "1"))
    one_line_error(tmp_path, f"{shard}: sample '000002' has an image (000002.jpg) but no .cls label", "add 000002.cls")
    one_line_error(tmp_path, "no .txt label", label="txt")


def test_a_label_without_an_image_is_named(tmp_path):
    shard = write_tar(tmp_path / "train" / "a.tar", sample("a", 1, "0") + [("b.heic", b"x"), ("b.cls", b"1")])
    one_line_error(tmp_path, f"{shard}: sample 'b' has a label and no image", "b.heic: install pillow-heif")


def test_a_label_not_in_classes_txt_is_named(tmp_path):
    shard = write_tar(tmp_path / "train" / "a.tar", sample("a", 1, "0") + sample("b", 2, "5"))
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    one_line_error(tmp_path, f"{shard}: b.cls: label 5 is not in {tmp_path / 'classes.txt'} (2 classes: 0 to 1)")
    write_tar(tmp_path / "train" / "a.tar", sample("a", 1, "cat", "txt") + sample("b", 2, "emu", "txt"))
    one_line_error(tmp_path, f"{shard}: b.txt: label 'emu' is not in", label="txt")
    write_tar(tmp_path / "train" / "a.tar", sample("a", 1, "cat") + sample("b", 2, "0"))
    one_line_error(tmp_path, "a.cls: 'cat' is not a class index", 'data.params.label = "txt"')


def test_a_bad_classes_txt_is_named(tmp_path):
    numbered_shards(tmp_path / "train", (3,))
    (tmp_path / "classes.txt").write_text("cat\n\ndog\n")
    one_line_error(tmp_path, "classes.txt: line 2 is empty")
    (tmp_path / "classes.txt").write_text("cat\ndog\ncat\n")
    one_line_error(tmp_path, "classes.txt: class 'cat' is on lines 1 and 3")


def test_write_shards_writes_an_image_folder_the_source_reads_back(image_folder, tmp_path):
    written = write_shards(image_folder, tmp_path / "shards", per_shard=10)
    assert {k: len(v) for k, v in written.items()} == {"train": 4, "test": 2}  # 36 and 12 images
    splits = webdataset(str(tmp_path / "shards"), val_fraction=0.25)
    assert splits.classes == ["blue", "green", "red"] and (len(splits.train), len(splits.val), len(splits.test)) == (27, 9, 12)
    originals = sorted(p.read_bytes() for p in (image_folder / "test").rglob("*.png"))
    assert sorted(splits.test.read_bytes(i) for i in range(12)) == originals  # the files' own bytes
    colour = {"red": 0, "green": 1, "blue": 2}
    assert all(int(np.argmax(splits.test.load(i).mean(axis=(0, 1)))) == colour[splits.classes[t]]
               for i, t in enumerate(splits.test.targets))
    with pytest.raises(DataError, match="not an empty folder"):
        write_shards(image_folder, tmp_path / "shards")


def test_validate_counts_the_shards_images(image_folder, tiny_recipe, tmp_path):
    write_shards(image_folder, tmp_path / "shards", per_shard=16)
    tiny_recipe["data"].update(source="webdataset", root=str(tmp_path / "shards"))
    lines = check_data(load_recipe(write_recipe(tmp_path / "r.toml", tiny_recipe)))
    assert lines == ["data: 27 train, 9 val, 12 test images, 3 classes"]


def test_a_run_trains_on_shards_and_reports_its_test_accuracy(image_folder, tiny_recipe, tmp_path):
    write_shards(image_folder, tmp_path / "shards", per_shard=16)
    tiny_recipe["data"].update(source="webdataset", root=str(tmp_path / "shards"))
    tiny_recipe["phases"]["finetune"]["epochs"] = 1
    result = transferkit.finetune(tiny_recipe, output=tmp_path / "run", quiet=True)
    assert result.test_accuracy is not None and result.test_accuracy >= 0.9, result.summary["test"]
    rows = (result.run_dir / "splits.csv").read_text().splitlines()
    assert len(rows) == 49 and rows[-1].startswith("test,") and ".tar:" in rows[-1]
    again = transferkit.evaluate(result.run_dir)  # its test split, read from the shards again
    assert again["n"] == 12 and again["top1"] == pytest.approx(result.test_accuracy), again
