"""``suggest.csv`` (one row per suggested image, most useful first, with an empty ``label`` column
for a person to fill in) and ``suggest.html`` (a self-contained contact sheet, the audit's style)."""

from __future__ import annotations

import base64
import csv
import html
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ...data.decoding import decode_file
from ...engine.rundir.artifacts import atomic_write
from ..audit.html_csv import CSS
from ..report.html_markdown import thumbnail_jpeg

if TYPE_CHECKING:
    from .pool import Suggestions

COLUMNS = ("rank", "path", "suggested_label", "probability", "margin", "novelty", "score", "label")


def render_csv(result: Suggestions) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    p = result.picked
    for i, path in enumerate(result.paths):
        writer.writerow([i + 1, str(path), result.labels[i], f"{result.probabilities[i]:.4f}", f"{p.margins[i]:.4f}",
                         f"{p.novelty[i]:.4f}", f"{p.scores[i]:.4f}", ""])
    return buffer.getvalue()


def _tile(result: Suggestions, i: int) -> str:
    e = html.escape
    path = result.paths[i]
    image, _ = decode_file(path, 160)
    picture = ("" if image is None else
               f'<img alt="{e(path.name)}" src="data:image/jpeg;base64,{base64.b64encode(thumbnail_jpeg(image)).decode("ascii")}">')
    p = result.picked
    lines = [f"<b>{i + 1}. {e(path.name)}</b>", f"model: {e(result.labels[i])}? ({result.probabilities[i]:.2f})",
             f"margin {p.margins[i]:.2f} · novelty {p.novelty[i]:.3f}", f'<span class="muted">{e(str(path))}</span>']
    return f'<figure class="tile">{picture}<figcaption>{"<br>".join(lines)}</figcaption></figure>'


def render_html(result: Suggestions, run: str) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', "<title>transferkit suggest</title>",
             f"<style>{CSS}</style></head><body>", "<h1>Images to label next</h1>",
             (f'<p class="muted">run {e(run)}; {len(result.paths)} of {result.pool_size} pool images, most useful first;'
              f" written {e(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>"),
             ('<p class="muted">Useful = the model hesitates (a small margin between its two most likely classes) and the'
              " image is unlike the labelled ones and those picked before it (novelty: cosine distance in the model's"
              " feature space). Label them in suggest.csv's label column.</p>"),
             '<div class="tiles">', *(_tile(result, i) for i in range(len(result.paths))), "</div></body></html>"]
    return "\n".join(parts) + "\n"


def write_suggestions(result: Suggestions, output: Path, run: str) -> tuple[Path, Path]:
    output.mkdir(parents=True, exist_ok=True)
    table, page = render_csv(result), render_html(result, run)
    csv_path, html_path = output / "suggest.csv", output / "suggest.html"
    atomic_write(csv_path, lambda fh: fh.write(table.encode("utf-8")))
    atomic_write(html_path, lambda fh: fh.write(page.encode("utf-8")))
    return csv_path, html_path
