"""A run's summary, typed: what each phase did, which weights the run ended with and how they were
chosen, their figures, and how far to trust them. ``summary.json`` is its ``to_dict()``; a
checkpoint carries it too, so a resumed run goes on from the same record.

The figures inside (a split's metrics, the choice's candidates, calibration and rejection) stay
plain dicts: they are tables of numbers that are written out as they are. The sections and the
keys of a phase's record are fields here, so a name that is not one is an ``AttributeError``, not
a silently new key in the JSON. ``from_dict`` reads the summary of any run (an older one's keys
that are no longer fields are kept in ``extra`` and written back unchanged)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

Metrics = dict[str, Any]  # Predictions.metrics(): top1, macro_f1, per_class, confusion_matrix, n, loss...


@dataclass
class PhaseSummary:
    """``summary["phases"][name]``: one phase's record."""

    seconds: float = 0.0  # training time, the feature cache's included
    trainable_parameters: int | None = None
    lr: float | None = None
    feature_cache_seconds: float | None = None
    probe: dict[str, Any] | None = None  # phase 1 as a converged probe: its C, how it was chosen, its fit
    early_stopped: dict[str, Any] | None = None
    test_top1: float | None = None  # at the phase's end
    test_top1_averaged: float | None = None  # the averager's weights at the phase's end
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSummary:
    """``summary.json``: filled in by the trainer (phases, the phase-end test figures), the choice
    of the final weights (``final``, and ``test`` becomes the chosen weights'), the confidence fit
    (``calibration``, ``rejection``) and the end of the run (names, files, times)."""

    phases: dict[str, PhaseSummary] = field(default_factory=dict)
    class_weights: dict[str, float] | None = None
    test: Metrics | None = None  # the final weights' (until the choice: the last phase's)
    test_raw: Metrics | None = None  # the last weights' when an averager's are the phase's result
    averager: str | None = None
    final: dict[str, Any] | None = None  # train.final: the policy, the candidates, what was chosen, on what
    test_finetuned: Metrics | None = None  # the fine-tuned weights' when other weights were chosen
    val: Metrics | None = None  # the final weights' on validation, when there is no test split
    calibration: dict[str, Any] | None = None
    rejection: dict[str, Any] | None = None
    name: str | None = None
    classes: list[str] | None = None
    device: str | None = None
    backbone: str | None = None
    best_val_or_train_top1: float | None = None
    skipped_images: list[dict[str, str]] | None = None
    leakage: Any = None
    decode_seconds: float | None = None
    wall_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def phase(self, name: str) -> PhaseSummary:
        """The record of phase ``name``, created at its first epoch."""
        return self.phases.setdefault(name, PhaseSummary())

    @property
    def final_figures(self) -> Metrics | None:
        """The final weights' figures: on test, or on validation without a test split."""
        return self.test or self.val

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: fields that are None left out, ``extra`` merged back."""
        phases = {name: {**{k: v for k, v in _fields(p).items() if v is not None}, **p.extra} for name, p in self.phases.items()}
        return {"phases": phases, **{k: v for k, v in _fields(self).items() if v is not None}, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunSummary":
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "phases"}
        phase_known = {f.name for f in dataclasses.fields(PhaseSummary)} - {"extra"}
        phases = {name: PhaseSummary(**{k: v for k, v in info.items() if k in phase_known},
                                     extra={k: v for k, v in info.items() if k not in phase_known})
                  for name, info in dict(data.get("phases", {})).items()}
        return cls(phases=phases, **{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known and k != "phases"})


def _fields(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record) if f.name not in ("extra", "phases")}
