"""Rendering ``transferkit audit``: ``audit.csv`` (one row per flagged image, most suspect first)
and ``audit.html`` (self-contained: thumbnails as data URIs, inline CSS, every text escaped)."""

from __future__ import annotations

import base64
import csv
import html
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ...engine.rundir.checkpoint_io import atomic_write
from ..report.html_markdown import thumbnail_jpeg
from .findings import KINDS, Finding

if TYPE_CHECKING:
    from ...recipe import Recipe
    from .scan import AuditResult

CSV_COLUMNS = ("rank", "kind", "score", "path", "split", "given_label", "suggested_label", "p_given_label", "duplicate_of",
               "also", "detail")
MAX_TILES = 200  # per kind on the page; the CSV lists every flagged image
TITLES = {"leak": "Leaks: validation/test images that duplicate an earlier split's image",
          "duplicate": "Duplicates within a split", "mislabeled": "Likely mislabeled", "outlier": "Outliers"}
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; }
figure.tile { margin: 0; width: 170px; font-size: 0.8em; overflow-wrap: anywhere; }
figure.pair { width: 340px; } figure.tile img { width: 160px; height: auto; margin-right: 4px; }
.muted { color: #777; } .bad { color: #b00; } .good { color: #070; }
"""


def csv_rows(result: AuditResult) -> list[dict[str, str]]:
    """The CSV's rows, in the findings' order (most suspect first)."""
    images = result.images
    rows = []
    for rank, f in enumerate(result.findings, start=1):
        rows.append({
            "rank": str(rank), "kind": f.kind, "score": f"{f.score:.4f}", "path": images.names[f.index],
            "split": images.splits[f.index], "given_label": images.classes[images.labels[f.index]],
            "suggested_label": images.classes[f.suggested], "p_given_label": f"{f.p_given:.4f}",
            "duplicate_of": images.names[f.duplicate_of] if f.duplicate_of is not None else "",
            "also": " ".join(f.also), "detail": f.detail,
        })
    return rows


def render_csv(result: AuditResult) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(result))
    return buffer.getvalue()


def _image_uri(result: AuditResult, index: int) -> str:
    data = thumbnail_jpeg(result.images.load(index))
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _tile(result: AuditResult, f: Finding) -> str:
    e = html.escape
    images = result.images
    name = images.names[f.index]
    given = images.classes[images.labels[f.index]]
    suggested = images.classes[f.suggested]
    pictures = [f'<img alt="{e(Path(name).name)}" src="{_image_uri(result, f.index)}">']
    lines = [f"<b>{e(Path(name).name)}</b> <span class=\"muted\">({e(images.splits[f.index])})</span>",
             f"given <b>{e(given)}</b>"]
    if f.kind == "mislabeled" or "mislabeled" in f.also:
        lines.append(f'suggested <b class="bad">{e(suggested)}</b> ({result.probs[f.index, f.suggested]:.3f});'
                     f" p(given) {f.p_given:.3f}")
    else:
        lines.append(f'probe: <span class="{"good" if suggested == given else "bad"}">{e(suggested)}</span>')
    if f.duplicate_of is not None:
        other = images.names[f.duplicate_of]
        pictures.append(f'<img alt="{e(Path(other).name)}" src="{_image_uri(result, f.duplicate_of)}">')
    lines.append(f"score {f.score:.3f}" + (f" · also {e(', '.join(f.also))}" if f.also else ""))
    lines.append(f'<span class="muted">{e(f.detail)}</span>')
    lines.append(f'<span class="muted">{e(name)}</span>')
    kind = "tile pair" if f.duplicate_of is not None else "tile"
    return f'<figure class="{kind}">{"".join(pictures)}<figcaption>{"<br>".join(lines)}</figcaption></figure>'


def render_html(result: AuditResult, recipe: Recipe, max_tiles: int = MAX_TILES) -> str:
    """The page: settings and counts, then one section per kind of issue with thumbnails."""
    e = html.escape
    images = result.images
    counts = result.counts
    size = recipe.data.image_size or "the backbone's"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', "<title>transferkit audit</title>",
        f"<style>{CSS}</style></head><body>", "<h1>transferkit audit</h1>",
        (f'<p class="muted">data {e(str(recipe.data.root))}; backbone {e(recipe.backbone.name)} ({e(recipe.backbone.weights)}),'
         f" image size {e(str(size))}; written {e(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>"),
        "<table><tr><th>images</th><td>" + e(", ".join(f"{s} {images.splits.count(s)}" for s in dict.fromkeys(images.splits)))
        + f"</td></tr><tr><th>classes</th><td>{len(images.classes)}</td></tr>",
        *(f"<tr><th>{e(kind)}</th><td>{counts[kind]}</td></tr>" for kind in KINDS), "</table>",
        ('<p class="muted">Each image is listed once, under its first kind of issue; "also" names the others.'
         " Score: similarity for leaks and duplicates (1.0 = the same bytes), 1 - p(given label) for mislabeled"
         " images, the robust z-score of the distance to the nearest training images for outliers.</p>"),
    ]
    for kind in KINDS:
        found = [f for f in result.findings if f.kind == kind]
        shown = found[:max_tiles]
        parts.append(f"<h2>{e(TITLES[kind])} ({len(found)})</h2>")
        if not found:
            parts.append('<p class="muted">none found</p>')
            continue
        if len(shown) < len(found):
            parts.append(f'<p class="muted">the first {len(shown)} shown; audit.csv lists all {len(found)}</p>')
        parts += ['<div class="tiles">', *(_tile(result, f) for f in shown), "</div>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_audit(result: AuditResult, output: Path, recipe: Recipe) -> tuple[Path, Path]:
    """Write ``audit.html`` and ``audit.csv`` into ``output`` (created), each atomically."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    page, table = render_html(result, recipe), render_csv(result)
    html_path, csv_path = output / "audit.html", output / "audit.csv"
    atomic_write(html_path, lambda fh: fh.write(page.encode("utf-8")))
    atomic_write(csv_path, lambda fh: fh.write(table.encode("utf-8")))
    return html_path, csv_path

