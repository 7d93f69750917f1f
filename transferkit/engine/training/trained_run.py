"""What the phases leave for the end of a run (``Trainer.fit``'s result): the model as the last
epoch left it and the averager's weights, phase 1's weights (the probe: WiSE-FT's start), the
record so far, the predictions already made, and what predicting more takes. The choice of the
final weights, cross-fitting and the confidence fit read this, never the trainer's insides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ...data.sources import ImageSet
from ..evaluation.predict import Predictions, predict
from ..evaluation.prediction_cache import PredictionCache
from ..final.choice import PROBE
from ..prepare import Prepared
from ..run_summary import RunSummary
from ..rundir.run_dir import RunDir
from ..runtime.distributed import DistContext
from ..runtime.stop_signals import StopRequest
from .feature_cache import FeatureCache


def predict_images(
    prepared: Prepared, model: nn.Module, images: ImageSet, desc: str, *, dist: DistContext | None = None,
    cached: FeatureCache | None = None, probe: bool = False,
) -> Predictions:
    """Predictions of ``model`` on ``images`` as a run makes them: at the evaluation transform, or
    at phase 1's preprocessing (``probe``: the probe's own resolution), on cached features when
    given, with the recipe's batch size and workers. Their metrics: ``Predictions.metrics``."""
    r = prepared.recipe
    preprocess = prepared.probe_preprocessing if probe else prepared.eval_transform
    return predict(model, images, preprocess, runtime=prepared.runtime, batch_size=r.data.eval_batch_size or r.data.batch_size * 2,
                   num_workers=r.data.num_workers, features=cached, dist=dist, desc=desc)


@dataclass
class TrainedRun:
    prepared: Prepared
    run: RunDir
    model: nn.Module  # the live model, as the last epoch left it
    averaged: nn.Module | None  # the averager's weights, when the recipe averages
    phase1_state: dict[str, torch.Tensor] | None  # the model after phase 1; None when phase 1 did not train
    summary: RunSummary
    predictions: PredictionCache  # each (weights, split)'s predictions, made once
    best_top1: float
    dist: DistContext
    stop: StopRequest

    @property
    def last(self) -> nn.Module:
        """The phases' result: the averaged weights when the recipe averages, else the live model."""
        return self.averaged if self.averaged is not None else self.model

    def predictions_of(self, weights: str | None, split: str, model: Callable[[], nn.Module], desc: str) -> Predictions:
        """The predictions of the weights named ``weights`` on the run's ``split`` ("val" or
        "test"), computed once; ``model()`` builds them on a miss. ``"probe"`` is at the probe's
        preprocessing, any other name at the evaluation transform."""
        images = getattr(self.prepared.splits, split)
        return self.predictions.get(weights, split, lambda: predict_images(self.prepared, model(), images, desc, dist=self.dist,
                                                                           probe=weights == PROBE))
