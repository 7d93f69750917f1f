"""SCALE.md, SCALE.json and SCALE.png from ``scale.py``'s per-size records: a table of every stage's
time and peak memory against N, the log-log slopes, and a plot of both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def slope(ns: list[int], values: list[float]) -> float | None:
    """Least-squares slope of log(value) against log(N) (1: linear)."""
    pairs = [(n, v) for n, v in zip(ns, values) if v and v > 0]
    if len(pairs) < 2:
        return None
    x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return float(np.polyfit(x, y, 1)[0])


def _stage_table(results: dict[int, dict]) -> tuple[list[str], dict[str, dict[int, dict]]]:
    names: list[str] = []
    table: dict[str, dict[int, dict]] = {}
    for n, record in results.items():
        for stage in record["stages"]:
            if stage["stage"] not in table:
                names.append(stage["stage"])
                table[stage["stage"]] = {}
            table[stage["stage"]][n] = stage
    return names, table


def _fmt(seconds: float) -> str:
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.0f}"


def plot(results: dict[int, dict], path: Path, before: dict[int, dict] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(results)
    names, table = _stage_table(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, name in enumerate(names):
        xs = [n for n in ns if n in table[name]]
        colour = f"C{i}"
        left.loglog(xs, [max(table[name][n]["seconds"], 1e-3) for n in xs], marker="o", color=colour, label=name)
        right.loglog(xs, [max(table[name][n]["peak_rss_mb"] - table[name][n]["start_rss_mb"], 1.0) for n in xs],
                     marker="o", color=colour, label=name)
    if before:
        _, then = _stage_table(before)
        xs = sorted(n for n in then.get("probe", {}))
        if xs:
            i = names.index("probe")
            left.loglog(xs, [then["probe"][n]["seconds"] for n in xs], "--", marker="x", color=f"C{i}", label="probe, before")
            right.loglog(xs, [max(then["probe"][n]["peak_rss_mb"] - then["probe"][n]["start_rss_mb"], 1.0) for n in xs],
                         "--", marker="x", color=f"C{i}", label="probe, before")
    ref = np.array([ns[0], ns[-1]], dtype=float)
    left.loglog(ref, ref / ref[0] * 1.0, "k:", lw=1, label="slope 1 (from 1 s)")
    left.set(xlabel="training images N", ylabel="seconds", title="wall time per stage")
    right.set(xlabel="training images N", ylabel="MB", title="memory the stage added (its peak less its start)")
    left.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _before_rows(results: dict[int, dict], before: dict[int, dict]) -> list[str]:
    """Each stage's time and peak memory before and after, at the sizes both measured."""
    ns = sorted(n for n in before if n in results)
    if not ns:
        return []
    _, now = _stage_table(results)
    names, then = _stage_table(before)
    rows = ["| stage | " + " | ".join(f"N = {n:,}: before -> after (s) | peak MB" for n in ns) + " |", "|" + "---|" * (2 * len(ns) + 1)]
    for name in names:
        cells = []
        for n in ns:
            a, b = then[name].get(n), now.get(name, {}).get(n)
            cells += [f"{_fmt(a['seconds'])} -> {_fmt(b['seconds'])}" if a and b else "-",
                      f"{a['peak_rss_mb']:.0f} -> {b['peak_rss_mb']:.0f}" if a and b else "-"]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def write_report(results: dict[int, dict], out: Path, *, machine: str, args: dict, before: dict[int, dict] | None = None) -> None:
    ns = sorted(results)
    names, table = _stage_table(results)
    slopes = {name: {"seconds": slope([n for n in ns if n in table[name]], [table[name][n]["seconds"] for n in ns if n in table[name]]),
                     "peak_rss_mb": slope([n for n in ns if n in table[name]], [table[name][n]["peak_rss_mb"] for n in ns if n in table[name]])}
              for name in names}
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    plot(results, png, before)
    head = "| stage | " + " | ".join(f"N = {n:,}: s / peak MB" for n in ns) + " | slope (time) | slope (memory) |"
    rows = [head, "|" + "---|" * (len(ns) + 3)]
    for name in names:
        cells = [f"{_fmt(table[name][n]['seconds'])} / {table[name][n]['peak_rss_mb']:.0f}" if n in table[name] else "-" for n in ns]
        s = slopes[name]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {s['seconds']:.2f} | {s['peak_rss_mb']:.2f} |"
                    if s["seconds"] is not None else f"| {name} | " + " | ".join(cells) + " | - | - |")
    added = ["| stage | " + " | ".join(f"N = {n:,}: MB added" for n in ns) + " |", "|" + "---|" * (len(ns) + 1)]
    for name in names:
        added.append(f"| {name} | " + " | ".join(
            f"{table[name][n]['peak_rss_mb'] - table[name][n]['start_rss_mb']:+.0f}" if n in table[name] else "-" for n in ns) + " |")
    facts = ["| N | JPEG MB | decoded MB (kept in memory?) | probe folds x C points | finetune img/s | validate's own peak MB |",
             "|---|---|---|---|---|---|"]
    for n in ns:
        r = results[n]
        facts.append(f"| {n:,} | {r.get('jpeg_mb', '-')} | {r['decode']['decoded_mb']} ({'yes' if r['decode']['kept_in_memory'] else 'no'})"
                     f" | {r['probe']['folds']} x {r['probe']['cv_points']} | {r['finetune_images_per_s']} | {r['validate_process_peak_rss_mb']} |")
    text = [
        "# Scale: every stage's time and memory against the number of images",
        "",
        f"`python benchmarks/scale.py --sizes {','.join(map(str, ns))} --classes {args['classes']} --px {args['px']}"
        f" --workers {args['workers']}" + "".join(f" --set {o}" for o in args["overrides"]) + "`",
        "",
        f"Machine: {machine}. Generated JPEG ImageFolders ({args['classes']} classes, {args['px']} px), a tenth of N as test"
        " images; `timm/mobilenetv3_small_050` (random weights) at 64 px, so the pipeline is measured, not the network.",
        "",
        "Each cell: wall seconds / peak resident MB of the process and its loader workers during the stage (caches built by"
        " earlier stages included). Slopes: least-squares log-log, 1 = linear.",
        "",
        *rows,
        "",
        "What each stage itself added (its peak less the resident size it started with; what earlier stages hold, the"
        " decoded images above all, is in the first table's figures but not here):",
        "",
        *added,
        "",
        *facts,
        "",
        f"![time and memory against N]({png.name})",
        "",
    ]
    if before:
        text += [f"## Before and after (`--before-tag {args.get('before_tag')}`: the same script on the code before the change)", "",
                 *_before_rows(results, before), ""]
    out.write_text("\n".join(text))
    settings = {k: v for k, v in args.items() if k not in ("work", "out", "recipe", "root", "json", "child")}  # no local paths
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "args": settings, "slopes": slopes,
                                                     "results": {str(n): results[n] for n in ns},
                                                     "before": {str(n): r for n, r in (before or {}).items()}}, indent=1))
    print("\n".join(rows))
