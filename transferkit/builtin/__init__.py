"""Built-in default plugins: timm and torchvision backbones, datasets and basic augmentations."""
