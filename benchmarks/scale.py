"""How a run's cost grows with the number of images: wall time and peak memory of every stage on
generated ImageFolders of 1k, 10k and 100k training images (JPEG files, 160 px, 100 classes).

    .venv/bin/python benchmarks/scale.py --sizes 1000,10000,100000 --out benchmarks/SCALE.md
        [--classes 100] [--px 160] [--work DIR] [--workers 0] [--set KEY=VALUE ...]

Each size runs in its own process (so each starts from an empty heap), stage after stage, on the
engine's own functions in the order ``transferkit finetune`` calls them:

| stage | what |
|---|---|
| validate | ``transferkit validate RECIPE`` (a child process of its own) |
| scan + split | the ImageFolder scan and the stratified validation split |
| decode | ``decode_splits``: every file read, checked and (within ``data.decode_cache_mb``) kept |
| features | phase 1's feature cache of the training split |
| probe | phase 1's probe: C by 5-fold cross-validation, then the final fit |
| finetune epoch | one epoch of phase 2 (the whole backbone trains) |
| evaluate | the test split (a tenth of N), from the decoded cache |
| predict files | ``predict`` on up to 10,000 files read from disk, as ``transferkit predict`` reads them |

The backbone is small (``timm/mobilenetv3_small_050``, random weights, 64 px): this measures the
pipeline, not the network. Memory is the peak resident size of the process and its loader
workers while the stage runs; the table also gives what the stage started with, since caches
built by earlier stages stay. Slopes are least-squares fits of log(time) and log(memory) against
log(N); 1 is linear.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

RECIPE = """
name = "scale"
seed = 0
[data]
source = "imagefolder"
root = "{root}"
image_size = 64
batch_size = 64
val_fraction = 0.1
num_workers = {workers}
[backbone]
name = "timm/mobilenetv3_small_050"
weights = "none"
[phases.extract]
image_size = 64
[phases.finetune]
epochs = 1
[train]
device = "cpu"
"""
PREDICT_FILES = 10_000
STAGES = ("validate", "scan + split", "decode", "features", "probe", "finetune epoch", "evaluate", "predict files")


def child(args: argparse.Namespace) -> None:
    """One size, every stage, in this process; the records go to ``args.json``."""
    import numpy as np
    import torch

    from scale_data import Stages
    from transferkit.data.decoding import decode_splits
    from transferkit.data.sources import FileImages
    from transferkit.data.transforms import train_transform
    from transferkit.engine.evaluation.predict import predict
    from transferkit.engine.prepare import Prepared, build_backbone, build_model, eval_preprocessing, probe_preprocessing
    from transferkit.engine.runtime.device import resolve_runtime
    from transferkit.engine.splits import build_splits
    from transferkit.engine.training.feature_cache import FeatureCache
    from transferkit.engine.training.loop import train_epoch
    from transferkit.engine.training.phases import TrainingBatches, configure_phase, phase_plans, start_phase, step_settings
    from transferkit.engine.training.probe import fit_probe
    from transferkit.models.backbone import data_config
    from transferkit.recipe_loading import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    stages = Stages()

    def validate() -> None:
        cmd = [sys.executable, "-m", "transferkit", "validate", str(args.recipe), *sum((["--set", o] for o in args.overrides), [])]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise SystemExit(f"validate failed: {proc.stderr.read()[-2000:]}")
        stages.records.append({"stage": "validate (its process)", "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)})

    stages.run("validate", validate)
    validate_rss = stages.records.pop(0)["peak_rss_mb"]
    backbone = build_backbone(recipe)
    eval_tf = eval_preprocessing(recipe, data_config(backbone))
    probe_tf = probe_preprocessing(recipe, data_config(backbone))
    shorter = max(eval_tf.resize_shorter_side, probe_tf.resize_shorter_side)
    splits = stages.run("scan + split", build_splits, recipe, shorter=shorter)
    splits, report = stages.run("decode", decode_splits, splits, shorter=shorter, on_bad="error",
                                budget_mb=recipe.data.decode_cache_mb)
    model = build_model(recipe, splits.classes, backbone)
    runtime = resolve_runtime(recipe.train)
    workers = recipe.data.num_workers
    batch = recipe.data.eval_batch_size or recipe.data.batch_size * 2
    cache = stages.run("features", FeatureCache.compute, backbone, splits.train, probe_tf, runtime,
                       batch_size=batch, num_workers=workers, desc="train features")
    fit = stages.run("probe", fit_probe, cache.features, cache.targets, len(splits.classes),
                     label_smoothing=recipe.phases.extract.label_smoothing, folds=recipe.phases.extract.cv_folds, seed=recipe.seed)
    with torch.no_grad():
        model.head.weight.copy_(fit.weight)
        model.head.bias.copy_(fit.bias)
    del cache
    train_tf = train_transform(model.data_config, recipe.data.image_size, crop_scale=recipe.data.crop_scale, hflip=recipe.data.hflip,
                               image_augs=[], seed=recipe.seed)
    prepared = Prepared(recipe, splits, model, train_tf, eval_tf, [], runtime, report, probe_transform=probe_tf)
    plan = phase_plans(recipe)[1]
    batches = TrainingBatches(prepared)
    configure_phase(model, plan)
    setup = start_phase(model, plan, recipe.train, runtime, batches.steps_per_epoch)
    settings = step_settings(prepared, False, None)
    epoch = stages.run("finetune epoch", train_epoch, model, model, batches.epoch(plan, 0), setup.optimizer, setup.scheduler,
                       runtime, settings, setup.scaler, where="finetune epoch", total=len(batches))
    test = stages.run("evaluate", predict, model, splits.test, eval_tf, runtime=runtime, batch_size=batch, num_workers=workers)
    files = sorted(Path(args.root).glob("*/*/*.jpg"))[:PREDICT_FILES]
    loose = FileImages(files, [0] * len(files), splits.classes)
    stages.run("predict files", predict, model, loose, eval_tf, classes=splits.classes, runtime=runtime, batch_size=batch,
               num_workers=workers, on_bad="skip")
    out = {
        "n_train": len(splits.train) + len(splits.val or []), "n_test": len(splits.test), "classes": len(splits.classes),
        "stages": stages.records, "validate_process_peak_rss_mb": validate_rss,
        "decode": {"kept_in_memory": report.kept_in_memory, "decoded_mb": round(report.decoded_mb, 1)},
        "probe": {"C": fit.C, "folds": fit.folds, "cv_points": len(fit.cv_log_loss)},
        "finetune_images_per_s": round(epoch["images"] / max(epoch["seconds"], 1e-9), 1),
        "test_top1_after_one_epoch": round(float(np.mean(test.preds == test.targets)), 4),
        "predict_files": len(files), "threads": torch.get_num_threads(), "workers": workers,
    }
    Path(args.json).write_text(json.dumps(out, indent=1))


def run_size(n: int, args: argparse.Namespace) -> dict:
    from scale_data import folder_bytes, write_folder

    root = Path(args.work) / f"n{n}"
    result = Path(args.work) / f"n{n}-{args.tag}.json"
    if result.is_file() and not args.again:
        return json.loads(result.read_text())
    started = time.perf_counter()
    write_folder(root, n, max(args.classes, n // 10), args.classes, args.px)
    print(f"N = {n}: {folder_bytes(root) / 2**20:.0f} MB of JPEG files ({time.perf_counter() - started:.0f} s to write)", flush=True)
    recipe = Path(args.work) / f"scale-{n}.toml"
    recipe.write_text(RECIPE.format(root=root, workers=args.workers))
    cmd = [sys.executable, __file__, "--child", "--recipe", str(recipe), "--root", str(root), "--json", str(result),
           *sum((["--set", o] for o in args.overrides), [])]
    env = {**os.environ, "TRANSFERKIT_OFFLINE": "1", "TQDM_MININTERVAL": "5"}
    subprocess.run(cmd, check=True, env=env)
    record = json.loads(result.read_text())
    record["jpeg_mb"] = round(folder_bytes(root) / 2**20, 1)
    result.write_text(json.dumps(record, indent=1))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--px", type=int, default=160)
    parser.add_argument("--workers", type=int, default=0, help="data.num_workers")
    parser.add_argument("--work", default="runs/scale")
    parser.add_argument("--out", default="benchmarks/SCALE.md")
    parser.add_argument("--tag", default="now", help="names this configuration's results (the folders are shared)")
    parser.add_argument("--again", action="store_true", help="measure sizes that already have a result")
    parser.add_argument("--before-tag", help="also tabulate the results saved under this tag (e.g. run on the code before a change)")
    parser.add_argument("--report-only", action="store_true", help="write the report from the saved results, measure nothing")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--recipe", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    saved = {n: Path(args.work) / f"n{n}-{args.tag}.json" for n in sizes}
    results = {n: json.loads(saved[n].read_text()) if args.report_only else run_size(n, args) for n in sizes}
    before = {}
    for n in sizes:
        path = Path(args.work) / f"n{n}-{args.before_tag}.json"
        if args.before_tag and path.is_file():
            before[n] = json.loads(path.read_text())
    from scale_report import write_report

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}"
    write_report(results, Path(args.out), machine=machine, args=vars(args), before=before)


if __name__ == "__main__":
    main()
