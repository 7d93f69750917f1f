"""transferkit-averaging: EMA/Polyak and SWA averagers, checkpoint averaging, test-time augmentation."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module of this package that defines it (imported on first use, so loading
# the transferkit plugin imports no torch)
_LAZY = {
    "average_state_dicts": "checkpoints",
    "average_top_checkpoints": "checkpoints",
    "EMA": "ema",
    "SWA": "swa",
    "FiveCrop": "tta",
    "Flip": "tta",
    "MultiScale": "tta",
    "TenCrop": "tta",
}

__all__ = [
    "EMA",
    "FiveCrop",
    "Flip",
    "MultiScale",
    "SWA",
    "TenCrop",
    "average_state_dicts",
    "average_top_checkpoints",
]


def __getattr__(name: str) -> Any:  # PEP 562: a name imports its module on first use
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from .checkpoints import average_state_dicts, average_top_checkpoints
    from .ema import EMA
    from .swa import SWA
    from .tta import FiveCrop, Flip, MultiScale, TenCrop
