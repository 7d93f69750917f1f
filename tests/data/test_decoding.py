"""Bad images and bad datasets: every case answered clearly, before training starts."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.builtin.datasets import imagefolder
from transferkit.cli import main
from transferkit.data.decoding import DecodedImages, decode_splits
from transferkit.data.sources import read_image
from transferkit.errors import DataError
from transferkit.testing import write_image_folder, write_recipe


def _bad_files(folder: Path) -> dict[str, str]:
    """Writes one bad file of each kind into train/red; returns name -> expected reason."""
    red = folder / "train" / "red"
    good = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(good, format="JPEG")
    (red / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (red / "empty.jpg").write_bytes(b"")
    (red / "notes.png").write_text("this is not an image\n")
    return {"truncated.jpg": "truncated", "empty.jpg": "empty file (0 bytes)", "notes.png": "not an image"}


def test_error_policy_names_every_bad_file_at_once(image_folder):
    expected = _bad_files(image_folder)
    with pytest.raises(DataError) as info:
        decode_splits(imagefolder(str(image_folder)), shorter=None, on_bad="error", budget_mb=100)
    text = str(info.value)
    assert text.startswith("3 bad image(s):") and "\n" not in text and 'data.on_bad_image = "skip"' in text
    for name, reason in expected.items():
        assert f"{name}: {reason}" in text


def test_skip_policy_trains_on_the_rest_and_lists_exactly_the_bad_files(image_folder, tiny_recipe, tmp_path, capsys):
    expected = _bad_files(image_folder)
    tiny_recipe["data"]["on_bad_image"] = "skip"
    tiny_recipe["phases"]["finetune"]["epochs"] = 1
    path = write_recipe(tmp_path / "skip.toml", tiny_recipe)
    assert main(["finetune", str(path), "--output", str(tmp_path / "run")]) == 0
    listed = (tmp_path / "run" / "skipped_images.txt").read_text().splitlines()
    assert sorted(Path(line.split("\t")[0]).name for line in listed) == sorted(expected)
    assert "skipped   3 bad image(s)" in capsys.readouterr().out


def test_cli_exit_code_for_bad_images(image_folder, tiny_recipe, tmp_path, capsys):
    _bad_files(image_folder)
    path = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["finetune", str(path), "--output", str(tmp_path / "run")]) == 2
    assert "3 bad image(s)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written


def test_decompression_bomb_is_a_bad_image(image_folder, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x40 = 1600 pixels > the limit
    with pytest.raises(DataError, match="over the decompression-bomb limit of 1,000 pixels"):
        decode_splits(imagefolder(str(image_folder)), shorter=None, on_bad="error", budget_mb=100)


def test_unusual_but_valid_images_decode_to_rgb(tmp_path):
    rgb = np.zeros((30, 20, 3), np.uint8)
    rgb[:10] = (255, 0, 0)  # red band on top
    cases = {
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "gray.png": Image.fromarray(rgb[..., 0]),
        "rgba.png": Image.fromarray(np.dstack([rgb, np.full((30, 20), 128, np.uint8)])),
        "palette.png": Image.fromarray(rgb).convert("P"),
        "deep.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
    }
    cases["palette.png"].info["transparency"] = 0
    for name, image in cases.items():
        image.save(tmp_path / name)
        array = read_image(tmp_path / name)
        assert array.dtype == np.uint8 and array.shape == (30, 20, 3), name
    assert read_image(tmp_path / "deep.png")[0, 0, 0] == 255  # 16-bit scaled, not clipped


def test_exif_orientation_is_respected(tmp_path):
    wide = np.zeros((10, 30, 3), np.uint8)
    image = Image.fromarray(wide)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_image(tmp_path / "rotated.jpg").shape == (30, 10, 3)


def test_decoded_once_at_the_working_resolution(tmp_path):
    root = write_image_folder(tmp_path, {"train": 3, "test": 1})
    splits, report = decode_splits(imagefolder(str(root), val_fraction=0.0), shorter=20, on_bad="error", budget_mb=100)
    assert isinstance(splits.train, DecodedImages) and report.kept_in_memory
    assert {min(a.shape[:2]) for a in splits.train.arrays} == {20}
    over, report = decode_splits(imagefolder(str(root), val_fraction=0.0), shorter=20, on_bad="error", budget_mb=0)
    assert not isinstance(over.train, DecodedImages) and not report.kept_in_memory


def test_same_file_in_train_and_test_is_reported_with_counts(image_folder, tiny_recipe, tmp_path, capsys):
    for i in range(2):
        src = image_folder / "train" / "red" / f"red_train_{i}.png"
        (image_folder / "test" / "red" / f"copy{i}.png").write_bytes(src.read_bytes())
    tiny_recipe["phases"]["finetune"]["epochs"] = 0
    path = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["finetune", str(path), "--output", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "warning: 2 image file(s) in train have the same bytes as files in test" in out


def test_single_class_and_differing_class_sets(tmp_path):
    one = write_image_folder(tmp_path / "one", {"train": 2})
    for cls in ("green", "blue"):
        for f in (one / "train" / cls).iterdir():
            f.unlink()
        (one / "train" / cls).rmdir()
    with pytest.raises(DataError, match="found 1 class; a classifier needs at least 2 class folders"):
        imagefolder(str(one)).check()
    two = write_image_folder(tmp_path / "two", {"train": 4, "test": 2})
    (two / "test" / "purple").mkdir()
    Image.new("RGB", (8, 8)).save(two / "test" / "purple" / "p.png")
    with pytest.raises(DataError, match="the test split's classes .* differ from train's"):
        imagefolder(str(two)).check()


def test_fewer_images_than_a_batch(tiny_recipe, tmp_path, capsys):
    tiny_recipe["data"]["batch_size"] = 64
    path = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["finetune", str(path), "--output", str(tmp_path / "run")]) == 2
    assert "data.batch_size: 64 is larger than the training split (27 images)" in capsys.readouterr().err


def test_float_and_16_bit_tiffs_scale_instead_of_decoding_black(tmp_path):
    ramp = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(ramp, mode="F").save(tmp_path / "unit.tif")  # float values 0..1 (mode F)
    Image.fromarray(ramp * 65535.0, mode="F").save(tmp_path / "wide.tif")  # float values 0..65535
    for name in ("unit.tif", "wide.tif"):
        array = read_image(tmp_path / name)
        assert array.dtype == np.uint8 and array.shape == (8, 8, 3), name
        assert array[0, 0, 0] == 0 and array[-1, -1, 0] == 255 and 120 <= array[4, 0, 0] <= 135, name
    Image.fromarray(np.full((8, 8), np.nan, np.float32), mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(DataError, match=r"nan\.tif: float image with NaN or infinite values"):
        read_image(tmp_path / "nan.tif")
    Image.fromarray(np.full((8, 8), -5.0, np.float32), mode="F").save(tmp_path / "negative.tif")
    with pytest.raises(DataError, match=r"negative\.tif: float image with values -5\.\.-5"):
        read_image(tmp_path / "negative.tif")


def test_a_thin_png_costs_no_more_than_a_normal_image(tiny_run, tmp_path):
    import time
    import tracemalloc

    import transferkit

    Image.fromarray(np.full((1, 200_000, 3), 128, np.uint8)).save(tmp_path / "thin.png")
    assert (tmp_path / "thin.png").stat().st_size < 2000  # a few hundred bytes on disk
    model = transferkit.load(tiny_run)
    model.predict([str(tmp_path / "thin.png")])  # warm up: first-call costs are not the image's
    tracemalloc.start()
    started = time.perf_counter()
    prediction = model.predict([str(tmp_path / "thin.png")])[0]
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert prediction.label in model.classes
    assert seconds < 5 and peak < 64 * 2**20, (seconds, peak / 2**20)  # it was 159 s and 5.7 GB at 224 px


def test_a_pixel_bomb_in_predict_is_one_line_and_costs_only_itself(tiny_run, image_folder, tmp_path, capsys):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)  # 20000 x 20000 RGB: 1.2 GB decoded
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    good = sorted((image_folder / "test" / "red").glob("*.png"))[:3]
    assert main(["predict", str(tiny_run), str(good[0]), str(bomb), *map(str, good[1:])]) == 1
    out, err = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(p) for p in good]  # its batch-mates predicted
    assert f"skipped {bomb}: over the decompression-bomb limit" in err
    assert err.strip().splitlines()[-1].startswith("transferkit: error: 1 of 4 files could not be read")


def test_one_bad_image_in_evaluate_data_is_skipped_and_named(tiny_run, image_folder, capsys):
    (image_folder / "test" / "red" / "broken.png").write_bytes(b"not a png at all")
    assert main(["evaluate", str(tiny_run), "--data", str(image_folder)]) == 0
    out = capsys.readouterr().out
    assert "on 12 images" in out and "skipped 1 image(s) that could not be read" in out and "broken.png: not an image" in out


def _with_alarm(seconds: int, fifo: Path | None = None):
    """Fail (instead of hanging the test run) when a call blocks: a FIFO's open would. The FIFO
    is opened for writing and closed first, so a reader blocked in another thread gets its EOF."""
    import os
    import signal

    def hung(*_):
        if fifo is not None:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        raise TimeoutError("blocked: a FIFO or device was opened")

    signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_a_device_is_a_bad_image_not_a_hang(image_folder, tiny_recipe, tmp_path, capsys, kind):
    import os
    import signal

    target = image_folder / "train" / "red" / "pipe.png"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        os.symlink("/dev/zero", target)  # would read without end
    csv_file = tmp_path / "data.csv"
    rows = [f"{p},{p.parent.name},train" for p in sorted((image_folder / "train").rglob("*.png"))]
    rows += [f"{p},{p.parent.name},test" for p in sorted((image_folder / "test").rglob("*.png"))]
    csv_file.write_text("path,label,split\n" + "\n".join(rows) + "\n")
    tiny_recipe["data"] = {"source": "csv", "root": str(csv_file), "image_size": 32}
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe)
    _with_alarm(60, target if kind == "fifo" else None)
    try:
        assert main(["finetune", str(recipe), "--output", str(tmp_path / "run")]) == 2
    finally:
        signal.alarm(0)
    err = capsys.readouterr().err
    expected = "a FIFO (named pipe), not a regular image file" if kind == "fifo" else "a character device, not a regular image file"
    assert err.count("\n") == 1 and f"pipe.png: {expected}" in err


def test_a_csv_manifest_that_is_a_fifo_is_one_line(tmp_path):
    import os

    from transferkit.builtin.csv_manifest import read_manifest

    os.mkfifo(tmp_path / "data.csv")
    _with_alarm(20, tmp_path / "data.csv")
    try:
        with pytest.raises(DataError, match=r"data\.csv: a FIFO \(named pipe\), not a regular CSV file"):
            read_manifest(tmp_path / "data.csv")
    finally:
        import signal
        signal.alarm(0)


def test_over_its_budget_the_pass_keeps_nothing_and_its_memory_stays_under_the_budget(tmp_path):
    """The pass used to hold every decoded array until its end, then drop them all: memory grew
    with the data whatever the budget. Now it lets them go the moment they stop fitting."""
    import tracemalloc

    root = write_image_folder(tmp_path / "data", {"train": 100, "test": 10}, size=96)  # 27 KB decoded each, 9 MB in all
    splits = imagefolder(str(root), val_fraction=0.1)
    peaks = {}
    for budget in (0.5, 100.0):
        tracemalloc.start()
        out, report = decode_splits(splits, shorter=None, on_bad="error", budget_mb=budget, workers=1)
        peaks[budget] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        assert report.kept_in_memory == (budget == 100.0) and report.decoded_mb > 8.5
        assert isinstance(out.train, DecodedImages) == (budget == 100.0)
    assert peaks[0.5] < 2.5 and peaks[100.0] > 8.5, peaks  # the rest of the 2.5: decoding's own buffers
