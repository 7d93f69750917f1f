"""``transferkit evaluate`` on other images than the run's: a CSV manifest, a subset of the classes."""

from __future__ import annotations

from transferkit.cli import main


def test_evaluate_data_takes_a_csv_manifest_of_some_classes(tiny_run, image_folder, capsys):
    rows = [f"test/{c}/{p.name},{c}" for c in ("red", "green") for p in sorted((image_folder / "test" / c).glob("*.png"))]
    manifest = image_folder / "two.csv"
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    assert main(["evaluate", str(tiny_run), "--data", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "macro-F1 1.0000, " in out and "on 8 images of 2 of the 3 classes" in out and "top1 1.0000" in out
