"""The transferkit entry point (``[project.entry-points.transferkit] averaging``)."""

from __future__ import annotations

from typing import Callable

from transferkit import hookimpl, lazy_factory

from .command import configure_command, run_command  # argparse only: the averaging imports torch when it runs


def _lazy(target: str) -> object:
    return lazy_factory(f"{__package__}.{target}")  # imported when first built: loading the plugin imports no torch


@hookimpl
def register_averagers(register: Callable[..., None]) -> None:
    register("ema", _lazy("ema:EMA"), description="Polyak/EMA of the weights after each step (decay, warm-up; BN buffers copied)")
    register("swa", _lazy("swa:SWA"), description="SWA: uniform average at epoch ends from start_epoch; BN recalibrated when BN trains")


@hookimpl
def register_tta(register: Callable[..., None]) -> None:
    register("flip", _lazy("tta:Flip"), description="centre crop + its mirror (2 views)")
    register("5crop", _lazy("tta:FiveCrop"), description="four corners + centre (5 views)")
    register("10crop", _lazy("tta:TenCrop"), description="5 crops of the image and of its mirror (10 views)")
    register("multiscale", _lazy("tta:MultiScale"), description="centre crops at several scales, with mirrors")


@hookimpl
def register_commands(register: Callable[..., None]) -> None:
    register("average-checkpoints", configure_command, run=run_command,
             description="average a run's best kept epoch checkpoints into a new model")
