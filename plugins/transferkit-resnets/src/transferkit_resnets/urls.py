"""torchvision's ImageNet checkpoint URLs for these architectures: plain data (no torch import), so
the transferkit plugin registers its backbones without importing torch."""

TORCHVISION = "https://download.pytorch.org/models/"
# torchvision.models.<Arch>_Weights.IMAGENET1K_V1.url (torchvision 0.29). The hex in a file name
# is the start of the file's sha256, which torch.hub checks. V1, not V2: V2 exists only for some
# of these architectures (resnext101_64x4d has V1 only), and V1 is the original recipe.
IMAGENET1K_V1 = {
    "resnet18": TORCHVISION + "resnet18-f37072fd.pth",
    "resnet34": TORCHVISION + "resnet34-b627a593.pth",
    "resnet50": TORCHVISION + "resnet50-0676ba61.pth",
    "resnet101": TORCHVISION + "resnet101-63fe2227.pth",
    "resnet152": TORCHVISION + "resnet152-394f9c45.pth",
    "resnext50_32x4d": TORCHVISION + "resnext50_32x4d-7cdf4587.pth",
    "resnext101_32x8d": TORCHVISION + "resnext101_32x8d-8ba56ff5.pth",
    "resnext101_64x4d": TORCHVISION + "resnext101_64x4d-173b62eb.pth",
    "densenet121": TORCHVISION + "densenet121-a639ec97.pth",
    "densenet161": TORCHVISION + "densenet161-8d451a50.pth",
    "densenet169": TORCHVISION + "densenet169-b2777c0a.pth",
    "densenet201": TORCHVISION + "densenet201-c1103571.pth",
}
