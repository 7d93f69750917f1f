"""transferkit-acme: an example third-party transferkit plugin.

It adds the backbone ``acme/tinyconvnet`` and the image augmentation ``acme/posterize_noise``.
The hooks live in ``transferkit_acme.plugin`` (the entry point); the classes below also work on
their own, outside transferkit.
"""

from .posterize_noise import PosterizeNoise, posterize_noise
from .tinyconvnet import TinyConvNet, pretrained_path, tinyconvnet

__version__ = "0.1.0"

__all__ = ["PosterizeNoise", "TinyConvNet", "posterize_noise", "pretrained_path", "tinyconvnet"]
