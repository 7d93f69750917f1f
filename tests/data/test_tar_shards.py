"""Tar shards read on demand: indexed by their headers alone, read by any DataLoader worker, and
sharded across ranks so that every sample is seen once per epoch."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import transferkit.data.tar_shards as tar_shards
from transferkit.data.loaders import EpochBatchSampler, make_loader
from transferkit.data.tar_shards import PackedNames, TarShardImages, index_shards, split_key
from transferkit.errors import DataError


def png(value: int, size: int = 4) -> bytes:
    """A grey PNG whose every pixel is ``value`` (lossless: the pixel names the sample)."""
    out = io.BytesIO()
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def numbered_shards(folder: Path, sizes: tuple[int, ...] = (10, 10, 5)) -> list[Path]:
    """Shards of ``sizes`` samples; sample k's image is grey level k and its label k % 3."""
    paths, k = [], 0
    for number, count in enumerate(sizes):
        members = []
        for _ in range(count):
            members += [(f"{k:06d}.png", png(k)), (f"{k:06d}.cls", str(k % 3).encode())]
            k += 1
        paths.append(write_tar(folder / f"shard-{number:06d}.tar", members))
    return paths


def numbered_images(folder: Path, sizes: tuple[int, ...] = (10, 10, 5)) -> TarShardImages:
    index = index_shards(numbered_shards(folder, sizes), "cls", lambda text, where: int(text))
    return TarShardImages(index, index.labels, ["a", "b", "c"])


class Pixels(Dataset):
    """Each sample's grey level (which is its number) and label, read through ``load``."""

    def __init__(self, images: TarShardImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.images[index]
        return torch.from_numpy(image), label


def test_split_key_follows_webdatasets_convention():
    assert split_key("000123.jpg") == ("000123", "jpg")
    assert split_key("dir/000123.seg.PNG") == ("dir/000123", "seg.png")
    assert split_key("._000123.jpg") is None and split_key("README") is None


def test_packed_names_give_back_every_name():
    names = ["000001.jpg", "", "dir/é.png", "x" * 300]
    packed = PackedNames(names)
    assert len(packed) == 4 and [packed[i] for i in range(4)] == names


def test_the_index_holds_offsets_and_labels_and_reads_no_image_bytes(tmp_path, monkeypatch):
    big = np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(big).save(out, format="PNG")  # ~800 KB of noise each
    members = [m for k in range(8) for m in ((f"{k:06d}.png", out.getvalue()), (f"{k:06d}.cls", b"1"))]
    shard = write_tar(tmp_path / "big.tar", members)
    read = []

    class Counting(io.FileIO):
        def read(self, size=-1):
            data = super().read(size)
            read.append(len(data))
            return data

        def readinto(self, buffer):
            n = super().readinto(buffer)
            read.append(n or 0)
            return n

    monkeypatch.setattr(tar_shards, "open", lambda path, mode="rb", **kw: Counting(path, "r"), raising=False)
    index = index_shards([shard], "cls", lambda text, where: int(text))
    assert shard.stat().st_size > 6_000_000 and 0 < sum(read) < 64 * 1024, sum(read)  # headers and labels only
    monkeypatch.undo()
    images = TarShardImages(index, index.labels, ["a", "b"])
    assert len(images) == 8 and images.targets == [1] * 8
    assert images.describe(3) == f"{shard}:000003.png"
    assert np.array_equal(images.load(3), big)


def test_sharded_across_ranks_every_sample_is_read_once_per_epoch(tmp_path):
    images = numbered_images(tmp_path)  # 25 samples in shards of 10, 10 and 5
    for epoch in (0, 1):
        for world in (1, 2, 3):
            seen = []
            for rank in range(world):
                sampler = EpochBatchSampler(len(images), batch_size=4, shuffle=True, seed=7, rank=rank, world_size=world)
                sampler.set_epoch(epoch)
                for pixels, labels in make_loader(Pixels(images), sampler):
                    numbers = pixels[:, 0, 0, 0].tolist()
                    assert labels.tolist() == [k % 3 for k in numbers]
                    seen += numbers
            assert sorted(seen) == list(range(25)), (epoch, world)
    first, second = (EpochBatchSampler(25, 4, shuffle=True, seed=7, rank=0, world_size=2) for _ in range(2))
    second.set_epoch(1)
    assert first.batches() != second.batches()  # each epoch its own order


def test_dataloader_workers_read_the_same_pixels_as_the_main_process(tmp_path):
    images = numbered_images(tmp_path, (6, 6))
    expected = [images.load(i) for i in range(len(images))]  # the main process has shards open now
    copy = pickle.loads(pickle.dumps(images))  # what a spawned worker gets: no open files
    assert copy._open == {} and np.array_equal(copy.load(5), expected[5])
    loader = DataLoader(Pixels(images), batch_size=None, num_workers=2)
    got = [pixels.numpy() for pixels, _ in loader]
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))
    images.close()


def test_an_image_that_does_not_decode_is_one_line_naming_the_shard_and_member(tmp_path):
    shard = write_tar(tmp_path / "s.tar", [("a.png", png(1)), ("a.cls", b"0"), ("b.jpg", b"not a jpeg at all"), ("b.cls", b"1")])
    index = index_shards([shard], "cls", lambda text, where: int(text))
    images = TarShardImages(index, index.labels, ["x", "y"])
    assert images.load(0).shape == (4, 4, 3)
    with pytest.raises(DataError) as caught:
        images.load(1)
    assert str(caught.value).startswith(f"{shard}:b.jpg: not an image") and "\n" not in str(caught.value)


def test_a_shard_cut_after_it_was_indexed_is_named_when_read(tmp_path):
    shard = write_tar(tmp_path / "s.tar", [("a.cls", b"0"), ("a.png", png(1, 64))])
    index = index_shards([shard], "cls", lambda text, where: int(text))
    images = TarShardImages(index, index.labels, ["x"])
    shard.write_bytes(shard.read_bytes()[: int(index.offset[0]) + 10])
    with pytest.raises(DataError, match=r"s\.tar:a\.png: the shard ends .* bytes into this image"):
        images.load(0)
