"""``transferkit check RECIPE``: three quick sanity checks before a long run (the first steps of
Karpathy's "A recipe for training neural networks"), on a few batches of the training split,
with the evaluation transform (no augmentation), weight decay, dropout and label smoothing off:

1. **initial loss** — the untrained head's cross-entropy against ln(C): a freshly initialised
   head predicts near-uniformly, so anything far from ln(C) means the head, the features or the
   labels are not what they should be;
2. **overfit** — the head trains on the cached backbone features of ``--batches`` batches (or the
   whole model as phase 2 trains it, with ``--full-model``) and must reach 100% training accuracy;
   if not, the loss curve says whether the learning rate is too high or too low;
3. **labels** — a probe built on those batches must classify *other* training images better than
   chance. A head can memorise even random labels, so memorising alone proves little; what was
   learned has to carry over to images it has not seen, which it cannot when the labels are
   shuffled or unrelated to the images.

Python: ``report = transferkit.check("r.toml", dataset=...)``; ``report.passed``; ``print(report.format())``.
The checks themselves are in ``sanity_checks``.
"""

from __future__ import annotations

import argparse

import transferkit

NAME = "check"
HELP = "sanity checks before a long run: initial loss vs ln(C), overfitting a few batches, labels that carry over to held-out images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. data.root=DIR")
    parser.add_argument("--batches", type=int, default=2, metavar="N",
                        help="training batches to overfit (default 2; at most half the training split, the rest tests the labels)")
    parser.add_argument("--steps", type=int, metavar="N",
                        help="most optimizer steps of the overfit check (default 300 for the head, 60 with --full-model;"
                             " sanity_checks.DEFAULT_STEPS, kept in step by the tests)")
    parser.add_argument("--full-model", action="store_true",
                        help="overfit the whole model as phase 2 trains it (unfreeze policy, BN mode, finetune LR);"
                             " slower than the head on cached features")


def run(args: argparse.Namespace) -> int:
    recipe = transferkit.load_recipe(args.recipe, args.overrides)
    report = transferkit.check(recipe, batches=args.batches, steps=args.steps, full_model=args.full_model, log=print)
    print(report.format().splitlines()[-1])
    return 0 if report.passed else 1
