"""``transferkit predict`` on real folders: unreadable files are reported one per line and skipped,
the others predicted; ``--top-k 0`` refused; ``--output`` with every class's probability."""

from __future__ import annotations

import csv
import json

from transferkit.cli import main


def _folder_with_bad_files(image_folder, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    good = sorted((image_folder / "test" / "red").glob("*.png"))
    for f in good:
        (photos / f.name).write_bytes(f.read_bytes())
    (photos / "notes.png").write_text("not an image")
    (photos / "empty.jpg").write_bytes(b"")
    return photos, len(good)


def test_bad_files_are_reported_one_per_line_and_the_rest_predicted(tiny_run, image_folder, tmp_path, capsys):
    photos, good = _folder_with_bad_files(image_folder, tmp_path)
    assert main(["predict", str(tiny_run), str(photos), str(tmp_path / "missing.jpg")]) == 1
    captured = capsys.readouterr()
    predicted = [line for line in captured.out.splitlines() if "\t" in line]
    assert len(predicted) == good
    skipped = [line for line in captured.err.splitlines() if line.startswith("transferkit: skipped ")]
    assert sorted(line.removeprefix("transferkit: skipped ").split(": ")[0] for line in skipped) == sorted(
        [str(photos / "empty.jpg"), str(photos / "notes.png"), str(tmp_path / "missing.jpg")])
    assert any("empty file (0 bytes)" in line for line in skipped) and any("not an image" in line for line in skipped)
    assert captured.err.splitlines()[-1] == (f"transferkit: error: 3 of {good + 3} files could not be read (listed above)"
                                            f" and were skipped; the other {good} were predicted")


def test_top_k_zero_is_an_error(tiny_run, image_folder, capsys):
    assert main(["predict", str(tiny_run), str(image_folder / "test"), "--top-k", "0"]) == 2
    assert "--top-k 0: give 1 or more" in capsys.readouterr().err


def test_output_csv_and_json_hold_every_class_probability(tiny_run, image_folder, tmp_path, capsys):
    photos, good = _folder_with_bad_files(image_folder, tmp_path)
    assert main(["predict", str(tiny_run), str(photos), "--output", str(tmp_path / "preds.csv")]) == 1
    with open(tmp_path / "preds.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == good and list(rows[0]) == ["path", "label", "probability", "blue", "green", "red"]
    assert all(abs(sum(float(r[c]) for c in ("blue", "green", "red")) - 1) < 1e-4 for r in rows)
    assert all(r["probability"] == r[r["label"]] for r in rows)
    assert main(["predict", str(tiny_run), str(photos), "--output", str(tmp_path / "preds.json")]) == 1
    data = json.loads((tmp_path / "preds.json").read_text())
    assert data["classes"] == ["blue", "green", "red"] and len(data["predictions"]) == good
    assert set(data["predictions"][0]["probabilities"]) == {"blue", "green", "red"}
    assert sorted(s["path"].rsplit("/", 1)[-1] for s in data["skipped"]) == ["empty.jpg", "notes.png"]
    assert main(["predict", str(tiny_run), str(photos), "--output", str(tmp_path / "preds.txt")]) == 2
    assert "--output " in capsys.readouterr().err


def test_output_onto_a_run_file_is_refused_before_anything_is_predicted(tiny_run, image_folder, capsys):
    manifest = tiny_run / "manifest.json"
    before = manifest.read_bytes()
    photo = next((image_folder / "test" / "red").glob("*.png"))
    for name in ("manifest.json", "splits.csv"):
        assert main(["predict", str(tiny_run), str(photo), "--output", str(tiny_run / name)]) != 0
        assert "that is one of the files of run" in capsys.readouterr().err
    assert manifest.read_bytes() == before


def test_each_image_is_shrunk_right_after_decoding_so_memory_is_bounded(tiny_run, tmp_path, monkeypatch, capsys):
    """3 large photos: what predict keeps between decoding and predicting is resized (issue 24, item 6)."""
    import numpy as np
    from PIL import Image

    import transferkit
    from transferkit.inference import TrainedModel

    photos = tmp_path / "big"
    photos.mkdir()
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        Image.new("RGB", (3000, 2000), colour).save(photos / f"big{i}.png")
    side = transferkit.load(tiny_run).preprocessing.resize_shorter_side
    held: list[tuple[int, ...]] = []
    real = TrainedModel.predict

    def watching(self, images, *args, **kwargs):
        held.extend(np.asarray(a).shape for a in images)
        return real(self, images, *args, **kwargs)

    monkeypatch.setattr(TrainedModel, "predict", watching)
    assert main(["predict", str(tiny_run), str(photos)]) == 0
    assert len(held) == 3 and all(min(shape[:2]) == side and max(shape[:2]) <= 2 * side for shape in held)
    lines = [line for line in capsys.readouterr().out.splitlines() if "\t" in line]
    assert [line.split("\t")[1].split()[0] for line in lines] == [
        p.split()[0] for p in (transferkit.load(tiny_run).predict(str(photos / f"big{i}.png"))[0].label for i in range(3))]


def test_names_with_tabs_newlines_and_escapes_cannot_forge_or_split_lines(tiny_run, image_folder, tmp_path, capsys):
    """``fake.png<TAB>green 1.000`` as a file name prints escaped (issue 24, item 8)."""
    photos = tmp_path / "odd"
    photos.mkdir()
    red = sorted((image_folder / "test" / "red").glob("*.png"))[0]
    forged = "fake.png\tgreen 1.000\nother.png\tblue 1.000\x1b[2K.png"
    (photos / forged).write_bytes(red.read_bytes())
    (photos / "bad\nline\t\x1b[31m.png").write_text("not an image")
    assert main(["predict", str(tiny_run), str(photos)]) == 1
    captured = capsys.readouterr()
    out = [line for line in captured.out.splitlines() if line]
    assert len(out) == 1 and out[0].count("\t") == 1
    assert out[0].startswith(str(photos / "fake.png\\tgreen 1.000\\nother.png\\tblue 1.000\\x1b[2K.png") + "\t")
    skipped = [line for line in captured.err.splitlines() if line.startswith("transferkit: skipped")]
    assert skipped == [f"transferkit: skipped {photos}/bad\\nline\\t\\x1b[31m.png: not an image"]
    assert "\x1b" not in captured.out + captured.err
