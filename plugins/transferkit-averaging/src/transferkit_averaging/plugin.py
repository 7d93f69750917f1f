"""The transferkit entry point (``[project.entry-points.transferkit] averaging``)."""

from __future__ import annotations

from transferkit import Register, hookimpl, lazy_factory

from .command import configure_command, run_command  # argparse only: the averaging imports torch when it runs

PREFIX = "averaging/"  # the plugin's name: registered as "averaging/ema", the bare "ema" kept as an old name


def _lazy(target: str) -> object:
    return lazy_factory(f"{__package__}.{target}")  # imported when first built: loading the plugin imports no torch


AVERAGERS = {
    "ema": (_lazy("ema:EMA"), "Polyak/EMA of the weights after each step (decay, warm-up; BN buffers copied)"),
    "swa": (_lazy("swa:SWA"), "SWA: uniform average at epoch ends from start_epoch; BN recalibrated when BN trains"),
}
TTA = {
    "flip": (_lazy("tta:Flip"), "centre crop + its mirror (2 views)"),
    "5crop": (_lazy("tta:FiveCrop"), "four corners + centre (5 views)"),
    "10crop": (_lazy("tta:TenCrop"), "5 crops of the image and of its mirror (10 views)"),
    "multiscale": (_lazy("tta:MultiScale"), "centre crops at several scales, with mirrors"),
}


@hookimpl
def register_averagers(register: Register) -> None:
    for name, (factory, description) in AVERAGERS.items():
        register(PREFIX + name, factory, description=description, aliases=[name])


@hookimpl
def register_tta(register: Register) -> None:
    for name, (factory, description) in TTA.items():
        register(PREFIX + name, factory, description=description, aliases=[name])


@hookimpl
def register_commands(register: Register) -> None:
    register("average-checkpoints", configure_command, run=run_command,
             description="average a run's best kept epoch checkpoints into a new model")
