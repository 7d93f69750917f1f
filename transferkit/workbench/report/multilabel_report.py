"""``transferkit report`` of a multi-label run: one self-contained HTML page and its Markdown twin
(with PNG files), like a single-label run's: the summary, the training curves, each label's
precision-recall curve, and the per-label table (positives, average precision, threshold, and
precision, recall and F1 at it), all from one prediction pass (``evaluate_multilabel``) on the
run's test split (else validation, or ``--data CSV``)."""

from __future__ import annotations

import html
import io
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...engine.evaluation.multilabel_metrics import average_precision, multilabel_metrics, predictions
from ...engine.multilabel.figures import plot_multilabel_curves, plot_pr_curves
from ...engine.rundir.artifacts import atomic_write, encode_text
from ...engine.rundir.run_dir import RunDir
from ...evaluate_multilabel import MultiLabelPredictions, multilabel_predictions
from .html_markdown import CSS, _data_uri


def label_rows(p: MultiLabelPredictions) -> list[list[str]]:
    """Per label: positives, AP, threshold, precision, recall, F1 at the threshold."""
    ap = average_precision(p.probs, p.targets)
    flagged = predictions(p.probs, p.thresholds).astype(bool)
    truth = p.targets.astype(bool)
    rows = []
    for j, label in enumerate(p.labels):
        yes, true = flagged[:, j], truth[:, j]
        tp, fp, fn = int((yes & true).sum()), int((yes & ~true).sum()), int((~yes & true).sum())
        precision = tp / (tp + fp) if tp + fp else float("nan")
        recall = tp / (tp + fn) if tp + fn else float("nan")
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fn else float("nan")
        rows.append([label, str(int(truth[:, j].sum())), *(_num(v) for v in (ap[j], p.thresholds[j], precision, recall, f1))])
    return rows


def _num(value: float) -> str:
    return "-" if value is None or np.isnan(value) else f"{value:.3f}"


def _png(draw: Callable[[Any], None]) -> bytes:
    buffer = io.BytesIO()
    draw(buffer)
    return buffer.getvalue()


def build_multilabel_report(
    run_dir: str | Path, html_path: Path, data: str | Path | None, log: Callable[[str], None],
) -> tuple[Path, Path]:
    """``report``'s pages for a multi-label run (see the module's docstring)."""
    run = RunDir(run_dir)
    summary = run.read_summary() if run.summary_file.is_file() else {}
    p = multilabel_predictions(run.path, data)
    figures = multilabel_metrics(p.probs, p.targets, p.labels, p.thresholds)
    pngs = {"curves": _png(lambda f: plot_multilabel_curves(run.read_metrics(), f)),
            "pr": _png(lambda f: plot_pr_curves(p.probs, p.targets, p.labels, p.thresholds, f, p.where))}
    final, rule = summary.get("final") or {}, (summary.get("thresholds") or {}).get("rule", "?")
    facts = [("task", "multi-label (a sigmoid per label)"), ("backbone", str(summary.get("backbone", "?"))),
             ("final weights", f"{final.get('chosen', '?')} ({final.get('chosen_on', 'no choice')})"),
             ("thresholds", f"each label's {rule}, on validation"),
             ("macro mAP", _num(figures["macro_map"])), ("micro mAP", _num(figures["micro_map"])),
             ("macro-F1 at the thresholds", _num(figures["macro_f1"])), ("subset accuracy", _num(figures["subset_accuracy"])),
             ("images", f"{figures['n']} ({p.where})")]
    if figures["labels_without_positives"]:
        facts.append(("no positive image (left out of the macro mean)", ", ".join(figures["labels_without_positives"])))
    header = ["label", "positives", "AP", "threshold", "precision", "recall", "F1"]
    rows = label_rows(p)
    name = str(summary.get("name", run.path.name))
    e = html.escape
    page = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(name)}: transferkit report</title>",
        f"<style>{CSS}</style></head><body>", f"<h1>{e(name)}</h1>",
        f'<p class="muted">run directory {e(str(run.path))}; report written {e(time.strftime("%Y-%m-%d %H:%M:%S"))};'
        f" predictions on {e(p.where)}</p>", "<h2>Summary</h2><table>",
        *(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts), "</table>",
        "<h2>Training curves</h2>", f'<img class="figure" alt="training curves" src="{_data_uri(pngs["curves"], "image/png")}">',
        "<h2>Precision-recall per label</h2>", f'<img class="figure" alt="precision-recall" src="{_data_uri(pngs["pr"], "image/png")}">',
        "<h2>Per label</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>",
        *("<tr><td>" + e(r[0]) + "</td>" + "".join(f'<td class="num">{e(v)}</td>' for v in r[1:]) + "</tr>" for r in rows),
        "</table></body></html>",
    ]
    md_path = html_path.with_suffix(".md")
    names = {key: f"{html_path.stem}-{key}.png" for key in pngs}
    text = [f"# {name}", "", f"Predictions on {p.where}.", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts), "",
            "## Training curves", "", f"![training curves]({names['curves']})", "", "## Precision-recall per label", "",
            f"![precision-recall]({names['pr']})", "", "## Per label", "", "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows), ""]
    for key, data_png in pngs.items():
        atomic_write(html_path.with_name(names[key]), lambda fh, data_png=data_png: fh.write(data_png))
    atomic_write(html_path, lambda fh: fh.write(encode_text("\n".join(page))))
    atomic_write(md_path, lambda fh: fh.write(encode_text("\n".join(text))))
    log(f"{run.path}: macro mAP {figures['macro_map']:.4f} on {p.where}")
    log(f"report: {html_path} (self-contained) and {md_path}")
    return html_path, md_path
