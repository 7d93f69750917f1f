"""Rendering ``transferkit report``: the figures (PNG bytes), the self-contained HTML page (images
as base64 data URIs, inline CSS, every text escaped) and the Markdown with its PNG files."""

from __future__ import annotations

import base64
import html
import io
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ...engine.evaluation.plots import plot_confusion, plot_curves, plot_reliability, plot_tradeoff, plt
from ...engine.rundir.artifacts import atomic_write, display_name, encode_text

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } tr.avg td { font-weight: bold; background: #f6f6f6; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
img.figure { max-width: 100%; border: 1px solid #eee; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; }
figure.tile { margin: 0; width: 170px; font-size: 0.8em; } figure.tile img { width: 160px; height: auto; display: block; }
.muted { color: #777; } .wrong { color: #b00; }
"""


# -- figures -------------------------------------------------------------------------------------
def curves_png(records: Sequence[dict[str, Any]]) -> bytes:
    """Loss and accuracy per epoch (the engine's curves.png, drawn again from metrics.jsonl)."""
    buffer = io.BytesIO()
    plot_curves(records, buffer)  # type: ignore[arg-type] - savefig takes a file object too
    return buffer.getvalue()


def confusion_png(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str) -> bytes:
    buffer = io.BytesIO()
    plot_confusion(matrix, classes, buffer, title)  # type: ignore[arg-type]
    return buffer.getvalue()


def reliability_png(confidence: Any, split: str) -> bytes:
    buffer = io.BytesIO()
    plot_reliability(confidence.before, confidence.after, buffer, split, confidence.temperature)
    return buffer.getvalue()


def tradeoff_png(confidence: Any, split: str) -> bytes:
    at = confidence.at_rate
    marker = (at["rejected"], at["accuracy_accepted"], f"threshold at {confidence.rate:.0%} false rejection on val") if at else None
    buffer = io.BytesIO()
    plot_tradeoff(confidence.rejected, confidence.accuracy, buffer, split, marker)
    return buffer.getvalue()


def thumbnail_jpeg(image: np.ndarray, side: int = 160) -> bytes:
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    picture.thumbnail((side, side))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def wrong_png(tiles: Sequence[dict[str, Any]]) -> bytes:
    """The wrong images as one grid (for the Markdown), each titled true / predicted (p)."""
    cols = min(8, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile in zip(axes.flat, tiles):
        ax.imshow(tile["image"])
        ax.set_title(display_name(f"true {tile['true']}\npred {tile['pred']} ({tile['confidence']:.2f})"), fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# -- text ----------------------------------------------------------------------------------------
def summary_rows(content: Any) -> list[tuple[str, str]]:
    """The run's summary.json figures, and this report's evaluation, as (label, value) rows."""
    s, pred = content.summary, content.predictions
    rows = [("run", s.get("name", content.run_dir.name)), ("backbone", str(s.get("backbone", "-"))),
            ("device", str(s.get("device", "-"))), ("classes", str(len(s.get("classes", pred.classes))))]
    for phase, info in s.get("phases", {}).items():
        parts = [f"test top-1 {info['test_top1']:.4f}" if info.get("test_top1") is not None else "no test split"]
        parts += [f"lr {info['lr']:g}"] if "lr" in info else []
        parts += [f"{info.get('seconds', 0.0):.1f} s", f"{info.get('trainable_parameters', 0):,} trainable parameters"]
        rows.append((f"phase {phase}", ", ".join(parts)))
    for name in ("test", "val"):
        final = s.get(name)
        if final:
            shown = sorted(k for k in final if k.startswith("top")) + [k for k in ("macro_f1", "loss") if k in final]
            figures = ", ".join(f"{k} {final[k]:.4f}" for k in shown)
            rows.append((f"final model, {name} (at training time)", f"{figures} on {final.get('n', '?')} images"))
    if s.get("averager"):
        rows.append(("averaging", f"{s['averager']} (raw weights: test top-1 {s.get('test_raw', {}).get('top1', float('nan')):.4f})"))
    if "best_val_or_train_top1" in s:
        rows.append(("best epoch top-1 (val, else train)", f"{s['best_val_or_train_top1']:.4f}"))
    rows += [("decode time", f"{s['decode_seconds']:.1f} s")] if "decode_seconds" in s else []
    rows += [("wall time", f"{s['wall_seconds']:.1f} s")] if "wall_seconds" in s else []
    rows += [("skipped images", str(len(s["skipped_images"])))] if s.get("skipped_images") else []
    rows += [("train/test duplicates", str(len(s["leakage"])))] if s.get("leakage") else []
    n = len(pred.targets)
    accuracy = float((pred.preds == pred.targets).mean()) if n else float("nan")
    rows.append(("this report's predictions", f"{pred.where}: top-1 {accuracy:.4f}, {int((pred.preds != pred.targets).sum())} wrong"
                 f" of {n} (the exported model on the image files, as transferkit evaluate computes it; the training-time"
                 " figure came from the decoded-image cache and can differ by an image or two)"))
    return rows


def confidence_rows(content: Any) -> list[tuple[str, str]]:
    """Calibration and rejection figures of this report's predictions, as (label, value) rows."""
    c = content.confidence
    if c is None:
        return []
    how = f"T = {c.temperature:.4g}, fitted on the validation split" if c.fitted else "none recorded (a run from before calibration): T = 1"
    rows = [("temperature", how),
            ("ECE (15 bins)", f"{c.before.ece:.4f} uncalibrated, {c.after.ece:.4f} calibrated"),
            ("NLL", f"{c.nll_before:.4f} uncalibrated, {c.nll_after:.4f} calibrated")]
    if c.at_rate:
        a = c.at_rate
        rows.append((f"rejection at {c.rate:.0%} false rejection on val",
                     f"top probability < {a['threshold']:.4f}: {a['rejected']:.1%} of these images rejected; accuracy on the accepted"
                     f" {a['accuracy_accepted']:.4f} (all: {a['accuracy_all']:.4f})"))
    else:
        rows.append(("rejection", "no rejection rule recorded (a run from before, or without a validation split)"))
    for fraction in (0.05, 0.1, 0.2):
        k = int(round(fraction * len(c.rejected)))
        if 0 < k < len(c.rejected):
            rows.append((f"rejecting the lowest {fraction:.0%}", f"accuracy on the accepted {c.accuracy[k]:.4f}"))
    return rows


def class_rows(report: dict[str, Any], classes: Sequence[str]) -> list[tuple[str, list[str], bool]]:
    """(label, [precision, recall, F1, support], is_average) rows of a classification_report dict."""
    rows = []
    for name in [*classes, "micro avg", "macro avg", "weighted avg"]:
        if name not in report:
            continue
        r = report[name]
        rows.append((name, [f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1-score']:.4f}", str(int(r["support"]))],
                     name not in classes))
    if "accuracy" in report:
        total = int(report["macro avg"]["support"])
        rows.insert(len(classes), ("accuracy", ["", "", f"{report['accuracy']:.4f}", str(total)], True))
    return rows


def tiles(content: Any) -> list[dict[str, Any]]:
    pred = content.predictions
    out = []
    for index in content.wrong:
        image = pred.images.load(index)
        out.append({"image": image, "true": pred.classes[int(pred.targets[index])], "pred": pred.classes[int(pred.preds[index])],
                    "confidence": float(pred.probs[index, pred.preds[index]]), "file": Path(pred.images.describe(index)).name})
    return out


# -- the two documents ---------------------------------------------------------------------------
def render_html(content: Any, figures: dict[str, bytes], wrong_tiles: Sequence[dict[str, Any]]) -> str:
    e = html.escape
    pred = content.predictions
    name = str(content.summary.get("name", content.run_dir.name))
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(name)}: transferkit report</title>",
        f"<style>{CSS}</style></head><body>", f"<h1>{e(name)}</h1>",
        f'<p class="muted">run directory {e(str(content.run_dir))}; report written {e(time.strftime("%Y-%m-%d %H:%M:%S"))};'
        f" predictions on {e(pred.where)}</p>",
        "<h2>Summary</h2><table>",
        *(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in summary_rows(content)), "</table>",
        "<h2>Training curves</h2>",
        f'<img class="figure" alt="training curves" src="{_data_uri(figures["curves"], "image/png")}">' if figures.get("curves")
        else '<p class="muted">no epoch records in metrics.jsonl</p>',
        f"<h2>Confusion matrix ({e(pred.split)})</h2>",
        f'<img class="figure" alt="confusion matrix" src="{_data_uri(figures["confusion"], "image/png")}">',
        *_confidence_html(content, figures),
        f"<h2>Per-class precision, recall and F1 ({e(pred.split)})</h2>",
        '<table class="classes"><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>',
    ]
    for label, values, average in class_rows(content.class_report, pred.classes):
        cells = "".join(f'<td class="num">{e(v)}</td>' for v in values)
        row_class = ' class="avg"' if average else ""
        parts.append(f"<tr{row_class}><td>{e(label)}</td>{cells}</tr>")
    parts.append("</table>")
    parts.append(f"<h2>Most confidently wrong ({len(wrong_tiles)} shown, {e(pred.split)})</h2>")
    if not wrong_tiles:
        parts.append('<p class="muted">no wrong predictions</p>')
    parts.append('<div class="tiles">')
    for tile in wrong_tiles:
        uri = _data_uri(thumbnail_jpeg(tile["image"]), "image/jpeg")
        parts.append(
            f'<figure class="tile"><img alt="{e(tile["file"])}" src="{uri}"><figcaption>true <b>{e(tile["true"])}</b><br>'
            f'predicted <b class="wrong">{e(tile["pred"])}</b> ({tile["confidence"]:.3f})<br>'
            f'<span class="muted">{e(tile["file"])}</span></figcaption></figure>'
        )
    parts += ["</div>", "<h2>Recipe</h2>", f"<pre>{e(content.recipe_text)}</pre>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _confidence_html(content: Any, figures: dict[str, bytes]) -> list[str]:
    e = html.escape
    if content.confidence is None:
        return []
    split = e(content.predictions.split)
    return [
        f"<h2>Calibration ({split})</h2>", "<table>", *(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in confidence_rows(content)),
        "</table>", f'<img class="figure" alt="reliability diagram" src="{_data_uri(figures["reliability"], "image/png")}">',
        f"<h2>Rejection trade-off ({split})</h2>",
        '<p class="muted">Accuracy on the images kept when those with the lowest calibrated top probability are answered'
        " &quot;unknown&quot; (transferkit predict --reject RATE).</p>",
        f'<img class="figure" alt="rejection trade-off" src="{_data_uri(figures["tradeoff"], "image/png")}">',
    ]


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(content: Any, png_names: dict[str, str], wrong_tiles: Sequence[dict[str, Any]]) -> str:
    pred = content.predictions
    name = str(content.summary.get("name", content.run_dir.name))
    lines = [f"# {name}", "", f"Run directory `{content.run_dir}`; predictions on {pred.where}.", "", "## Summary", "",
             "| | |", "|---|---|", *(f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in summary_rows(content)), "",
             "## Training curves", ""]
    lines.append(f"![training curves]({png_names['curves']})" if "curves" in png_names else "No epoch records in metrics.jsonl.")
    lines += ["", f"## Confusion matrix ({pred.split})", "", f"![confusion matrix]({png_names['confusion']})", ""]
    if content.confidence is not None:
        lines += [f"## Calibration ({pred.split})", "", "| | |", "|---|---|",
                  *(f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in confidence_rows(content)), "",
                  f"![reliability diagram]({png_names['reliability']})", "", f"## Rejection trade-off ({pred.split})", "",
                  f"![rejection trade-off]({png_names['tradeoff']})", ""]
    lines += [f"## Per-class precision, recall and F1 ({pred.split})", "",
              "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for label, values, average in class_rows(content.class_report, pred.classes):
        shown = f"**{_md_cell(label)}**" if average else _md_cell(label)
        lines.append(f"| {shown} | " + " | ".join(values) + " |")
    lines += ["", f"## Most confidently wrong ({len(wrong_tiles)} shown, {pred.split})", ""]
    if wrong_tiles:
        lines += [f"![most confidently wrong images]({png_names['wrong']})", "", "| # | file | true | predicted | confidence |",
                  "|---:|---|---|---|---:|"]
        lines += [f"| {i + 1} | {_md_cell(t['file'])} | {_md_cell(t['true'])} | {_md_cell(t['pred'])} | {t['confidence']:.3f} |"
                  for i, t in enumerate(wrong_tiles)]
    else:
        lines.append("No wrong predictions.")
    fence = "~~~~" if "```" in content.recipe_text else "```"
    lines += ["", "## Recipe", "", f"{fence}toml", content.recipe_text.rstrip("\n"), fence, ""]
    return "\n".join(lines)


def write_report(content: Any, html_path: Path) -> Path:
    """Write the HTML page, the Markdown beside it and the Markdown's PNGs, each atomically;
    returns the Markdown's path."""
    html_path = Path(html_path)
    wrong_tiles = tiles(content)
    figures = {"curves": curves_png(content.records),
               "confusion": confusion_png(content.confusion, content.predictions.classes, content.predictions.split)}
    if content.confidence is not None:
        figures["reliability"] = reliability_png(content.confidence, content.predictions.split)
        figures["tradeoff"] = tradeoff_png(content.confidence, content.predictions.split)
    if wrong_tiles:
        figures["wrong"] = wrong_png(wrong_tiles)
    png_names = {}
    for key, data in figures.items():
        if data:
            png_names[key] = f"{html_path.stem}-{key}.png"
            atomic_write(html_path.with_name(png_names[key]), lambda fh, data=data: fh.write(data))
    md_path = html_path.with_suffix(".md")
    page = render_html(content, figures, wrong_tiles)
    atomic_write(html_path, lambda fh: fh.write(encode_text(page)))  # file names that are not UTF-8: their own bytes
    text = render_markdown(content, png_names, wrong_tiles)
    atomic_write(md_path, lambda fh: fh.write(encode_text(text)))
    return md_path
