"""transferkit-averaging: EMA/Polyak and SWA averagers, checkpoint averaging, test-time augmentation."""

from .checkpoints import average_state_dicts, average_top_checkpoints
from .ema import EMA
from .swa import SWA
from .tta import FiveCrop, Flip, MultiScale, TenCrop

__all__ = ["EMA", "SWA", "FiveCrop", "Flip", "MultiScale", "TenCrop", "average_state_dicts", "average_top_checkpoints"]
