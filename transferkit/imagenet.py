"""ImageNet's normalisation and input size: what most pretrained backbones were trained with, and
what a backbone without a ``data_config`` is assumed to want. Plugins import them from
``transferkit`` (``transferkit.IMAGENET_MEAN``); this module imports nothing, so that is free."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_INPUT_SIZE = (3, 224, 224)
