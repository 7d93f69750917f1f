"""What the candidates for a run's final weights score on test, beyond the ones the run chose
among: the fine-tuned model evaluated at other sizes (train-test resolution, Touvron et al. 2019),
and the output-space ensemble of the probe and the fine-tuned model (here their probabilities
averaged, each network at its own preprocessing; what a run ends with by default,
``train.final = "ensemble"``, adds their logits weighted onto one scale, one input resized inside:
``models/ensemble.py``).

    python benchmarks/transfer_cases.py recipe ROOT --tmp DIR     # keeps the run in DIR/run
    .venv/bin/python benchmarks/candidates.py DIR/run [DIR/run ...] [--sizes 192,224,256]
        [--out benchmarks/CANDIDATES.md]

Each run is a finished single-label run whose data has a test split. Read from it:
``checkpoints/phase1.safetensors`` (the probe: evaluated at its own preprocessing) and
``checkpoints/last.pt`` (the fine-tuned model as its last epoch left it; for a cross-fitted run,
the run's own fold, not the soup). Every figure is test top-1; none of them chose anything.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def score_run(run: Path, sizes: list[int]) -> dict:
    from safetensors.torch import load_file

    from transferkit.data.preprocessing import preprocessing_for
    from transferkit.engine.evaluation.predict import predict
    from transferkit.engine.final.choice import interpolate, model_with
    from transferkit.engine.prepare import build_model, probe_preprocessing
    from transferkit.engine.splits import build_splits
    from transferkit.models.ensemble import balanced_weights, ensemble_classifier
    from transferkit.recipe_loading import load_recipe

    recipe = load_recipe(run / "recipe.toml")
    splits = build_splits(recipe)
    if splits.test is None:
        raise SystemExit(f"{run}: its data has no test split")
    model = build_model(recipe, splits.classes).eval()
    probe = load_file(str(run / "checkpoints" / "phase1.safetensors"))
    finetuned = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"]
    labels = np.asarray(splits.test.targets)
    train_size = recipe.data.eval_image_size or recipe.data.image_size

    def predictions(state: dict, preprocess, images=splits.test):
        model.load_state_dict(state)
        return predict(model.eval(), images, preprocess, batch_size=64, desc="test" if images is splits.test else "val")

    def probs(state: dict, preprocess, images=splits.test) -> np.ndarray:
        return predictions(state, preprocess, images).probs

    started = time.perf_counter()
    probe_pre = probe_preprocessing(recipe, model.data_config)
    train_pre = preprocessing_for(model.data_config, train_size, recipe.data.crop_pct)
    probe_test, finetuned_test = predictions(probe, probe_pre), predictions(finetuned, train_pre)
    got = {f"probe@{probe_pre.image_size}": probe_test.probs}
    for size in sizes:
        got[f"finetuned@{size}"] = (finetuned_test.probs if size == train_size else
                                    probs(finetuned, preprocessing_for(model.data_config, size, recipe.data.crop_pct)))
    wise = interpolate(probe, finetuned, 0.5)
    got[f"wise-0.5@{train_size}"] = probs(wise, train_pre)
    pair = f"{probe_pre.image_size}+{train_size}"
    got[f"ensemble@{pair}"] = (probe_test.probs + finetuned_test.probs) / 2  # probabilities averaged
    got[f"ensemble-logits@{pair}"] = probe_test.logits + finetuned_test.logits  # logits averaged (same argmax as their mean)
    # what train.final = "ensemble" ends with: one classifier on the probe's input, resized inside for the fine-tuned
    # network, each member's logits weighted onto one scale (the run's own weights; a run that recorded none: measured
    # on its validation split as a run measures them)
    final = json.loads((run / "summary.json").read_text()).get("final", {})
    weights = ((final["weights"]["probe"], final["weights"]["finetuned"]) if "weights" in final else
               balanced_weights(predictions(probe, probe_pre, splits.val).logits, predictions(finetuned, train_pre, splits.val).logits)
               if splits.val is not None else (0.5, 0.5))
    for name, w in (("ensemble-built-plain", (0.5, 0.5)), ("ensemble-built", weights)):  # the plain mean: round 9's default
        built = ensemble_classifier(model_with(model, probe), model_with(model, finetuned), train_size, weights=w)
        got[f"{name}@{probe_pre.image_size}"] = predict(built, splits.test, probe_pre, batch_size=64, desc="test").probs
    return {"name": Path(str(recipe.data.root)).name, "n": int(len(labels)), "seconds": round(time.perf_counter() - started, 1),
            "chosen": final.get("chosen"), "weights": [round(float(w), 4) for w in weights],
            "top1": {name: float((p.argmax(1) == labels).mean()) for name, p in got.items()},
            "val_choice": val_choice(splits.val, lambda state, size: probs(state, preprocessing_for(
                model.data_config, size, recipe.data.crop_pct), splits.val), probe, finetuned, probe_pre.image_size, train_size)}


def val_choice(val, probs, probe: dict, finetuned: dict, probe_size: int, train_size: int) -> dict | None:
    """What the run's own choice (``final.choice.choose``, on its validation split) would keep with
    the ensemble as one more candidate: each candidate's validation top-1 and calibrated log-loss."""
    from transferkit.engine.final.calibration import calibrated_log_loss
    from transferkit.engine.final.choice import Candidate, choose

    if val is None:
        return None
    labels = np.asarray(val.targets)
    got = {"probe": probs(probe, probe_size), "finetuned": probs(finetuned, train_size)}
    got["ensemble"] = (got["probe"] + got["finetuned"]) / 2
    candidates = []
    for alpha, (name, p) in zip((0.0, 1.0, 0.5), got.items()):
        candidate = Candidate(name, alpha, None)
        candidate.val = {"top1": float((p.argmax(1) == labels).mean()),
                         "loss_calibrated": calibrated_log_loss(np.log(np.clip(p, 1e-12, 1.0)), labels)}
        candidates.append(candidate)
    return {"n": int(len(labels)), "chosen": choose(candidates, len(labels)).name,
            **{c.name: {"top1": c.val["top1"], "loss_calibrated": c.val["loss_calibrated"]} for c in candidates}}


def write(rows: list[dict], args: argparse.Namespace) -> None:
    columns = list(rows[0]["top1"])
    lines = [
        "# Candidates: the fine-tuned model at other sizes, and the probe + fine-tuned ensemble", "",
        f"`python benchmarks/candidates.py RUN ... --sizes {args.sizes}` on finished runs of `recipes/flowers.toml`"
        " (`transfer_cases.py recipe ROOT --tmp DIR`). Test top-1 of each candidate; `@N`: evaluated at N px;"
        " `ensemble`: the probe's and the fine-tuned model's probabilities averaged (two forward passes per image,"
        " each network at its own preprocessing); `ensemble-logits`: their logits averaged instead; `ensemble-built`:"
        " what `train.final = \"ensemble\"` ends with, one classifier reading the probe's input and resizing it inside"
        " for the fine-tuned network, each member's logits weighted onto one scale (`models/ensemble.py`; `weights`:"
        " probe, fine-tuned); `ensemble-built-plain`: the same classifier with the plain mean of the logits (the"
        " default before the weights).",
        "`chosen`: what the run itself ended with (`train.final`: the ensemble, or under `\"auto\"` its choice among the"
        " probe, the fine-tuned model at its training size and their WiSE-FT interpolations).", "",
        "| folder | test images | chosen | weights | " + " | ".join(columns) + " |",
        "|---|---|---|---|" + "---|" * len(columns),
    ]
    for r in rows:
        weights = "/".join(f"{w:.3f}" for w in r.get("weights", ()))
        lines.append(f"| {r['name']} | {r['n']} | {r['chosen']} | {weights} | " + " | ".join(f"{r['top1'][c]:.4f}" for c in columns) + " |")
    means = {c: float(np.mean([r["top1"][c] for r in rows])) for c in columns}
    lines += ["| mean | | | | " + " | ".join(f"{means[c]:.4f}" for c in columns) + " |", "",
              "With the ensemble as one more candidate, what the run's choice (`final.choice.choose`) keeps on its own"
              " validation split: top-1 / log-loss at the best temperature of the probe, the fine-tuned model and the ensemble.", "",
              "| folder | validation images | probe | fine-tuned | ensemble | kept |", "|---|---|---|---|---|---|"]
    for r in rows:
        v = r["val_choice"]
        if v is not None:
            cells = " | ".join(f"{v[n]['top1']:.4f} / {v[n]['loss_calibrated']:.4f}" for n in ("probe", "finetuned", "ensemble"))
            lines.append(f"| {r['name']} | {v['n']} | {cells} | {v['chosen']} |")
    lines.append("")
    Path(args.out).write_text("\n".join(lines))
    Path(args.out).with_suffix(".json").write_text(json.dumps({"sizes": args.sizes, "rows": rows}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--sizes", default="192,224,256", help="sizes the fine-tuned model is evaluated at")
    parser.add_argument("--out", default=str(HERE / "CANDIDATES.md"))
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        rows.append(score_run(run, [int(s) for s in args.sizes.split(",")]))
        print(rows[-1]["name"], json.dumps({k: round(v, 4) for k, v in rows[-1]["top1"].items()}), flush=True)
    write(rows, args)


if __name__ == "__main__":
    main()
