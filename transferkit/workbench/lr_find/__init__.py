"""``transferkit lr-find RECIPE``: Leslie Smith's learning-rate range test (Smith 2017, "Cyclical
learning rates for training neural networks", section 3.3), as fastai's ``lr_find`` runs it.

One phase is set up as the engine sets it up, then trained for ``--steps`` steps, one batch each,
while the learning rate grows exponentially from ``--start`` to ``--end``:

- ``extract``: backbone frozen, BatchNorm in eval mode, the head trains (on cached backbone
  features when the recipe caches them, as phase 1 does: fast);
- ``finetune``: the head is first trained as phase 1 trains it (phase 2 starts from that head),
  then the recipe's unfreeze policy and BatchNorm mode apply, with phase 2's training batches
  (augmentations, batch augmentations, label smoothing). The optimizer is the engine's, so each
  parameter group keeps its LR ratio to the base LR and all groups are scaled together.

The loss is smoothed by an exponential moving average with bias correction (beta = 0.98, as
fastai), and the test stops once the smoothed loss exceeds 4x the best seen, or is not finite.
The suggestion is read off the losses smoothed by a centred rolling median and mean (``level``),
not off the recorded EMA, which trails the loss by decades of LR and would suggest too high a
value:

- when the loss clearly falls (by more than ``margin``), the LR at its steepest descent against
  log10(LR), looked for up to the minimum (fastai's "steep");
- when it does not (finetuning from a trained head starts at its floor: flat, then rising), a
  tenth of the LR where it starts to rise above the minimum by ``margin`` (the classic "/10").

The minimum's LR / 10 is reported beside it (``margin``: see ``suggest``).

Nothing is written until the test is over: the folder (``runs/<name>/lr-find-<timestamp>/``, or
``--output``) then gets ``lr_find.png``, ``lr_find.csv`` and ``lr_find.json``, each atomically.

Python: ``result = transferkit.lr_find("r.toml", phase="extract")``; ``result.suggestion``,
``result.folder``. The work is in ``steps`` (the phase set up, the steps), ``range_test``
(the maths) and ``plot_files`` (the files).
"""

from __future__ import annotations

import argparse

import transferkit

NAME = "lr-find"
HELP = "learning-rate range test for a phase: a plot of loss against LR, the data, and a suggested LR for the recipe"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. data.root=DIR")
    parser.add_argument("--phase", choices=["extract", "finetune"], default="extract",
                        help="the phase whose LR to find (default extract)")
    parser.add_argument("--steps", type=int, default=100, metavar="N", help="optimizer steps, one batch each (default 100)")
    parser.add_argument("--start", type=float, default=1e-7, metavar="LR", help="first learning rate (default 1e-7)")
    parser.add_argument("--end", type=float, default=10.0, metavar="LR", help="last learning rate (default 10)")
    parser.add_argument("--output", metavar="DIR", help="output folder (default runs/<name>/lr-find-<timestamp>)")


def run(args: argparse.Namespace) -> int:
    recipe = transferkit.load_recipe(args.recipe, args.overrides)
    result = transferkit.lr_find(recipe, phase=args.phase, steps=args.steps, start=args.start, end=args.end, output=args.output)
    print(result.format())
    return 0
