"""The transferkit entry point (``[project.entry-points.transferkit] averaging``)."""

from __future__ import annotations

from typing import Callable

from transferkit import hookimpl

from .checkpoints import configure_command, run_command
from .ema import EMA
from .swa import SWA
from .tta import FiveCrop, Flip, MultiScale, TenCrop


@hookimpl
def register_averagers(register: Callable[..., None]) -> None:
    register("ema", EMA, description="Polyak/EMA of the weights after each step (decay, warm-up; BN buffers copied)")
    register("swa", SWA, description="SWA: uniform average at epoch ends from start_epoch; BN recalibrated when BN trains")


@hookimpl
def register_tta(register: Callable[..., None]) -> None:
    register("flip", Flip, description="centre crop + its mirror (2 views)")
    register("5crop", FiveCrop, description="four corners + centre (5 views)")
    register("10crop", TenCrop, description="5 crops of the image and of its mirror (10 views)")
    register("multiscale", MultiScale, description="centre crops at several scales, with mirrors")


@hookimpl
def register_commands(register: Callable[..., None]) -> None:
    register("average-checkpoints", configure_command, run=run_command,
             description="average a run's best kept epoch checkpoints into a new model")
