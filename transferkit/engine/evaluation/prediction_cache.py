"""Each split's predictions by each set of weights, computed once per run and reused.

The end of a run used to predict the same images again and again: the phase-end test, the
validation split for every WiSE-FT candidate, the chosen model's test figures, then validation,
test and the unknown images once more for calibration and rejection. Every one of those reads the
same logits: calibration only divides them by ``T``, rejection reads their softmax, the summary's
metrics come from the same rows. So the run keeps a ``PredictionCache``: the ``Predictions`` of each
``(weights, split)``, computed the first time they are asked for.

``weights`` names one set of weights *at its own evaluation preprocessing*, so that two equal
names are two equal forwards:

- ``"probe"``: phase 1's weights (``TrainedRun.phase1_state``) at the probe's preprocessing;
- ``"finetuned"``: phase 2's last weights (the averager's when the recipe averages);
- ``"wise-0.5"`` and the like: a WiSE-FT candidate (``final.choice.candidate_name``);
- ``"best"``, ``"soup"``, ``"soup-wise-0.5"``: the best epoch's weights, cross-fitting's soup and
  its interpolations (``cross_fit.soup_name``).

``None`` names weights nothing else shares: predicted each time, never kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from .predict import Predictions


@dataclass
class PredictionCache:
    """``Predictions`` by ``(weights, split)``."""

    entries: dict[tuple[str, str], Predictions] = field(default_factory=dict)

    def get(self, weights: str | None, split: str, compute: Callable[[], Predictions]) -> Predictions:
        """The predictions of ``weights`` on ``split``: kept ones, or ``compute()``'s, then kept."""
        if weights is None:
            return compute()
        key = (weights, split)
        if key not in self.entries:
            self.entries[key] = compute()
        return self.entries[key]

    def put(self, weights: str, split: str, predictions: Predictions) -> None:
        """Keep predictions made elsewhere (a phase's last validation or its test figures)."""
        self.entries[(weights, split)] = predictions

    def keep_only(self, weights: Iterable[str | None]) -> None:
        """Forget every other set of weights' predictions (the candidates not chosen: memory)."""
        kept = set(weights)
        self.entries = {key: value for key, value in self.entries.items() if key[0] in kept}
