"""``backbone.readout``: what the head reads from the backbone.

- ``"pooled"``: the backbone's pooled features, its own classifier's input (runs before this key);
- ``"stages"``: those, followed by the global average of each of the last ``STAGES`` feature
  stages' outputs (EfficientNet-Lite0: 1280 + 112 + 320 features). The last stage has pooled away
  much of the texture and local structure a new domain needs; the middle of the network keeps it
  (Evci et al. 2022, "Head2Toe"). One forward pass either way; the head is still one linear layer,
  so phase 1 is still a convex probe and phase 2 fine-tunes the same network;
- ``"auto"`` (the recipe's default): ``"stages"`` where the backbone can give them (timm networks
  with ``forward_intermediates``: ``FeatureBackbone.stage_widths``), ``"pooled"`` otherwise.

A run's manifest records what was applied; a manifest without it is a ``"pooled"`` run.
"""

from __future__ import annotations

from torch import nn

from ..errors import RecipeError

READOUTS = ("auto", "pooled", "stages")
STAGES = 2  # the last two feature stages: measured in benchmarks/TRANSFER.md (probe variants)


def apply_readout(module: nn.Module, readout: str, name: str, provider: str) -> str:
    """Set ``module`` to read ``readout`` and return what it reads ("pooled" or "stages")."""
    if readout not in READOUTS:
        raise RecipeError(f"backbone.readout = {readout!r}: not one of {', '.join(READOUTS)}")
    widths_of = getattr(module, "stage_widths", None)
    widths = widths_of() if callable(widths_of) else None
    able = widths is not None and len(widths) >= STAGES
    if readout == "pooled" or (readout == "auto" and not able):
        module.readout = "pooled"
        return "pooled"
    if not able:
        raise RecipeError(
            f'backbone.readout = "stages": backbone {name!r} (plugin {provider!r}) cannot return its stages\' outputs'
            ' (timm networks with forward_intermediates can); set backbone.readout = "pooled"'
        )
    module.read_stages(STAGES)
    module.readout = "stages"
    return "stages"


def readout_of(module: nn.Module) -> str:
    """What a built backbone reads: "stages" or "pooled" (a backbone built before this key)."""
    return getattr(module, "readout", "pooled")


def readout_blocks(module: nn.Module) -> list[int]:
    """The widths of what the head reads, in order: ``[num_features]`` for the pooled readout,
    ``[pooled, stage, ...]`` when it reads stages too (the probe scales each block as a whole)."""
    width = int(module.num_features)
    k = getattr(module, "readout_stages", 0)
    widths_of = getattr(module, "stage_widths", None)
    stages = (widths_of() or [])[-k:] if k and callable(widths_of) else []
    return [width - sum(stages), *stages] if stages and width > sum(stages) else [width]
