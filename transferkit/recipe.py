"""The recipe: one typed, validated description of a run, read from TOML with ``--set`` overrides.

Every model forbids unknown keys, so a typo is an error that names the key path (and the key it
was probably meant to be) instead of a setting silently ignored. Types are strict (``batch_size =
"32"`` or ``hflip = 1`` is refused, not converted) and every number is finite and bounded, so
``validate`` refuses what would fail, overflow or turn into NaN minutes into a run.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer, model_validator

BIG = 10**9  # a bound for counts (epochs, steps, ...) far above any real run's
SEED_MAX = 2**63 - 1  # what every generator seeded from it takes (torch: 64-bit)
PositiveInt = Annotated[int, Field(gt=0, le=BIG)]
NonNegInt = Annotated[int, Field(ge=0, le=BIG)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
Epochs = Annotated[int, Field(ge=0, le=100_000)]
WarmupEpochs = Annotated[float, Field(ge=0.0, le=100_000.0)]
ImageSize = Annotated[int, Field(gt=0, le=8192)]


class _Strict(BaseModel):
    # strict: no "32" for 32, no 1 for true; finite: no inf or nan for any float
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _paths_as_text(cls, data: Any) -> Any:
        # Python callers may give a pathlib.Path where a path is a string (data.root, backbone.weights)
        if isinstance(data, dict):
            return {k: str(v) if isinstance(v, PurePath) else v for k, v in data.items()}
        return data


class DataConfig(_Strict):
    """Where the images come from and how they are fed."""

    source: str = "imagefolder"
    root: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    # a folder of images of none of the classes: the end of a run measures how well they are
    # rejected (AUROC) and chooses the rejection threshold with them; never trained on
    unknown: str | None = None
    # a folder of images nobody labelled (searched recursively): phase 1's probe adds those it
    # labels with confidence >= phases.extract.pseudo_label_threshold, at pseudo_label_weight each
    unlabeled: str | None = None
    image_size: ImageSize | None = None
    # the fine-tuned model's evaluation size (validation, test, the exported model); unset: image_size
    # (evaluating above it lost: flowers12 0.9458 at 224 px against 0.9667 at the 192 px it trained at)
    eval_image_size: ImageSize | None = None
    val_fraction: Fraction = 0.1
    # held out as the test split where the source splits one folder (imagefolder, csv, digits:
    # 0.2 when unset) or a Python dataset without test_dataset (none when unset)
    test_fraction: Fraction | None = None
    # seeds the train / val / test split: fixed, so changing `seed` does not change the test set
    split_seed: Seed = 0
    batch_size: Annotated[int, Field(gt=0, le=65536)] = 32
    eval_batch_size: Annotated[int, Field(gt=0, le=65536)] | None = None
    # loader processes: a count, or "auto": on CUDA the process's cores less one (at most 8), on the CPU
    # none (the model's threads use every core; data/loaders.py loader_workers)
    num_workers: Annotated[int, Field(ge=0, le=1024)] | Literal["auto"] = "auto"
    crop_scale: tuple[float, float] = (0.25, 1.0)
    hflip: bool = True
    # evaluation: resize the shorter side to image_size / crop_pct, then centre-crop; unset: the backbone's own
    # at least 0.1: the resize is at most 10 x the crop (1e-300 would ask for an infinite one)
    crop_pct: Annotated[float, Field(ge=0.1, le=1.0)] | None = None
    on_bad_image: Literal["error", "skip"] = "error"
    # decoded images are kept in memory (uint8, working resolution) up to this size
    decode_cache_mb: Annotated[float, Field(ge=0.0, le=1e9)] = 4096.0
    # task = "multilabel": what separates the labels of one image in a CSV's label cell
    label_separator: Annotated[str, Field(min_length=1, max_length=3, pattern=r"^[^,\s\w]+$")] = ";"

    @field_validator("params")
    @classmethod
    def _own_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, own in (("seed", "split_seed"), ("val_fraction", "val_fraction"), ("root", "root")):
            if key in v:
                raise ValueError(f"{key!r} is a data key of its own: set data.{own} instead of data.params.{key}")
        return v

    @model_validator(mode="after")
    def _test_fraction_from_params(self) -> "DataConfig":
        # recipes written before data.test_fraction existed set it as a source parameter
        if "test_fraction" in self.params:
            params = dict(self.params)
            value = params.pop("test_fraction")
            if self.test_fraction is not None and value != self.test_fraction:
                raise ValueError("data.test_fraction and data.params.test_fraction differ: keep data.test_fraction")
            object.__setattr__(self, "params", params)
            object.__setattr__(self, "test_fraction", value)
        return self

    @field_validator("crop_scale", mode="before")
    @classmethod
    def _scale_pair(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v  # TOML has lists, not tuples

    @field_validator("crop_scale")
    @classmethod
    def _scale_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (0.0 < lo <= hi <= 1.0):
            raise ValueError("must be [low, high] with 0 < low <= high <= 1")
        return v


AUTO_BACKBONE = "auto"  # backbone.name: the best of backbone.candidates by a cross-validated probe


class BackboneConfig(_Strict):
    """The pretrained network under the new head; ``name = "auto"`` ranks ``candidates`` when the
    run starts (engine/preflight/backbone_ranking.py) and trains the first."""

    name: str = "timm/tf_efficientnet_lite0"
    weights: str = "imagenet"
    sha256: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    # what the head reads: the pooled features, or those and the last stages' averaged outputs
    # ("auto": the stages where the backbone can give them; models/readout.py)
    readout: Literal["auto", "pooled", "stages"] = "auto"
    head_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    candidates: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _candidates_with_auto(self) -> "BackboneConfig":
        if self.name == AUTO_BACKBONE and not self.candidates:
            raise ValueError('backbone.name = "auto" needs backbone.candidates, the backbones to rank, e.g.'
                             ' ["timm/tf_efficientnet_lite0", "timm/tf_efficientnet_lite1"]')
        if self.candidates and self.name != AUTO_BACKBONE:
            raise ValueError(f'backbone.candidates is read only with backbone.name = "auto" (here {self.name!r});'
                             ' set name = "auto" or remove candidates')
        if self.name == AUTO_BACKBONE and self.weights != "imagenet":
            raise ValueError(f'backbone.name = "auto" ranks ImageNet-pretrained candidates; backbone.weights = {self.weights!r}'
                             ' names one network\'s weights: set backbone.name to that network')
        return self

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 64 or any(c not in "0123456789abcdefABCDEF" for c in v)):
            raise ValueError("must be 64 hexadecimal characters (the output of `sha256sum FILE`)")
        return v.lower() if v else v


def with_backbone(recipe: "Recipe", name: str) -> "Recipe":
    """``recipe`` with ``backbone.name = name`` (an ``"auto"`` recipe's candidate, or its choice)."""
    chosen = recipe.model_copy(deep=True)
    chosen.backbone = recipe.backbone.model_copy(update={"name": name, "candidates": []})
    return chosen


# the two phases of a run, by the names recipes, checkpoints, metrics and summaries use (plain
# strings: they are stored in checkpoints that load with weights_only=True)
EXTRACT, FINETUNE = "extract", "finetune"
PHASES = (EXTRACT, FINETUNE)


PSEUDO_THRESHOLD, PSEUDO_WEIGHT = 0.9, 0.3  # data.unlabeled's defaults: see training/pseudo_labels.py


class ExtractPhase(_Strict):
    """Phase 1: backbone frozen, BatchNorm in eval mode, only the head trains."""

    epochs: Epochs = 5
    lr: Annotated[float, Field(gt=0.0, le=10.0)] = 1e-3
    warmup_epochs: WarmupEpochs = 0.0
    # train the head on backbone features computed once (not with batch augmentations)
    cache_features: bool = True
    # 1: features of the deterministic eval transform (exact); K: K seeded training augmentations
    cache_views: Annotated[int, Field(gt=0, le=1000)] = 1
    # "lbfgs": the head is a converged logistic probe on the cached features (L2 strength by cross-validation); "sgd": `epochs`
    # of the recipe's optimizer at `lr`; "auto": lbfgs with the cache, else sgd (README.md, "The learning rates")
    solver: Literal["auto", "lbfgs", "sgd"] = "auto"
    # scikit-learn's C (inverse L2 strength) for the lbfgs probe; unset: chosen by k-fold CV (1e-320 would underflow to NaN)
    C: Annotated[float, Field(ge=1e-8, le=1e8)] | None = None
    # the size phase 1's features are computed at, and the probe evaluated at; unset: 8/7 of the backbone's pretrained size
    # (FixRes: 256 px for a 224-px network) when data.image_size is at least 3/4 of the pretrained size (one forward pass per
    # image affords it even when fine-tuning cannot), else data.image_size (preprocessing.probe_image_size)
    image_size: ImageSize | None = None
    # the probe's own label smoothing (train.label_smoothing is phase 2's): hard labels fit a
    # better-calibrated probe and chose better C on the transfer benchmark
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    cv_folds: Annotated[int, Field(ge=2, le=20)] = 5
    # phase 1's cached features above this size go to a memory-mapped file (a temporary folder)
    # instead of memory: about 400,000 images of 1280 features fit under the default
    feature_cache_mb: Annotated[float, Field(ge=0.0, le=1e9)] = 2048.0
    # with data.unlabeled: the probe's confidence an unlabelled image needs to join the final fit
    # with its predicted class, and the weight it joins with (a labelled image weighs 1)
    pseudo_label_threshold: Annotated[float, Field(ge=0.0, lt=1.0)] = PSEUDO_THRESHOLD
    pseudo_label_weight: Annotated[float, Field(gt=0.0, le=1.0)] = PSEUDO_WEIGHT

    @model_validator(mode="after")
    def _probe_needs_cache(self) -> "ExtractPhase":
        if self.solver == "lbfgs" and not self.cache_features:
            raise ValueError('solver = "lbfgs" fits the head on cached features: set cache_features = true, or solver = "sgd"')
        return self

    @property
    def probe(self) -> bool:
        """Whether phase 1 fits the head as a converged probe (L-BFGS on cached features)."""
        return self.solver == "lbfgs" or (self.solver == "auto" and self.cache_features)


class FinetunePhase(_Strict):
    """Phase 2: the backbone (all of it or its last K stages) trains too, at ``lr`` when set, else
    at ``phases.extract.lr x lr_ratio``."""

    epochs: Epochs = 5
    # phase 2's learning rate itself, instead of lr_ratio (a recipe sets one of the two)
    lr: Annotated[float, Field(gt=0.0, le=10.0)] | None = None
    lr_ratio: Annotated[float, Field(gt=0.0, le=10.0)] = 0.1
    unfreeze: str = "all"
    bn: Literal["eval", "train"] = "eval"
    warmup_epochs: WarmupEpochs = 0.0
    # >1: cosine restarts, a snapshot model saved at the end of each cycle (snapshot ensembles)
    cycles: Annotated[int, Field(gt=0, le=10_000)] = 1
    # layer-wise LR decay: the head trains at the phase's LR, the backbone's last stage at
    # lr x layer_decay, the one before at lr x layer_decay^2, ... (1.0: one LR for all)
    layer_decay: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0

    @model_validator(mode="after")
    def _one_learning_rate(self) -> "FinetunePhase":
        if self.lr is not None and "lr_ratio" in self.model_fields_set:
            raise ValueError("lr and lr_ratio are both set; keep one: lr is phase 2's learning rate itself,"
                             " lr_ratio its multiple of phases.extract.lr")
        return self

    @model_serializer(mode="wrap")
    def _without_unused_ratio(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # with lr set, lr_ratio (its default) is not written: the dump loads again (a run's recipe.toml, --resume, sweeps)
        data = handler(self)
        if self.lr is not None:
            data.pop("lr_ratio", None)
        return data

    @model_validator(mode="after")
    def _whole_cycles(self) -> "FinetunePhase":
        if self.epochs % self.cycles:
            raise ValueError(f"cycles ({self.cycles}) must divide epochs ({self.epochs})")
        return self

    @field_validator("unfreeze")
    @classmethod
    def _policy(cls, v: str) -> str:
        if v in ("all", "none"):
            return v
        if v.startswith("last:") and v[5:].isdigit() and int(v[5:]) > 0:
            return v
        raise ValueError('must be "all", "none" or "last:K" with K a positive integer')


class Phases(_Strict):
    extract: ExtractPhase = Field(default_factory=ExtractPhase)
    finetune: FinetunePhase = Field(default_factory=FinetunePhase)


class EarlyStopping(_Strict):
    """Stop a phase when ``metric`` has not improved by more than ``min_delta`` for ``patience``
    epochs (Keras' EarlyStopping). Which weights the run then ends with is ``train.final``'s choice."""

    patience: Annotated[int, Field(gt=0, le=100_000)]
    metric: Literal["val_loss", "val_top1", "val_macro_f1"] = "val_loss"
    min_delta: Annotated[float, Field(ge=0.0, le=1e6)] = 0.0

    @property
    def higher_is_better(self) -> bool:
        return self.metric != "val_loss"


class TrainConfig(_Strict):
    """Settings shared by both phases."""

    optimizer: Literal["adamw", "sgd"] = "adamw"
    weight_decay: Annotated[float, Field(ge=0.0, le=10.0)] = 0.01
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    device: str = "auto"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True
    grad_clip: Annotated[float, Field(ge=0.0, le=1e6)] = 0.0
    # torch.compile the training forward (worth it on GPUs for long runs; compiling takes a while)
    compile: bool = False
    checkpoint_every_steps: NonNegInt = 0
    # keep the N best epochs' weights (checkpoints/epoch-*.safetensors + index.json)
    keep_checkpoints: Annotated[int, Field(ge=0, le=10_000)] = 0
    # "balanced": per-class loss weights n_samples / (n_classes * n_c) (scikit-learn), both phases
    class_weights: Literal["none", "balanced"] = "none"
    # scalars (step loss and LR, epoch loss and accuracy, per phase) in RUN_DIR/tensorboard/
    tensorboard: bool = False
    # the weights a run ends with: "ensemble" (the probe and the fine-tuned model, logits on one scale: models/ensemble.py), "last"
    # (the last epoch, or the averager's), "best" (the best validation epoch of either phase), "auto" (chosen among the probe,
    # the fine-tuned model and their WiSE-FT interpolations; never below the probe on the evidence it chooses on)
    final: Literal["ensemble", "last", "best", "auto"] = "ensemble"
    # how "auto" scores its candidates: 1 = on the validation split; K = on out-of-fold predictions of every labelled image (K - 1
    # more fine-tunings, the final model a soup of the K fold models: engine/final/cross_fit.py); "auto" = 5 while the validation
    # split is under 64 images, else 1
    folds: Literal["auto"] | Annotated[int, Field(ge=1, le=20)] = "auto"
    # the temperature and rejection rule at the end of a run: "auto" fits them on at least 50 images
    # (validation, or out-of-fold predictions), "always" on whatever validation there is, "never"
    calibrate: Literal["auto", "always", "never"] = "auto"
    # also measure every candidate for the final weights on the test split (one pass each)
    test_candidates: bool = False
    # {patience = N, metric = "val_loss" | "val_top1" | "val_macro_f1", min_delta = 0}: stop a
    # phase's epochs early (needs a validation split)
    early_stopping: EarlyStopping | None = None

    @field_validator("folds")
    @classmethod
    def _folds(cls, v: Any) -> Any:
        if v == 2:  # fold 0 is the run itself, holding out its validation split: a second fold would train on that alone
            raise ValueError('2 folds cannot be balanced (the run holds out only its validation split); use 1, 3 or more, or "auto"')
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda", "mps") or v.startswith("cuda:"):
            return v
        raise ValueError('must be "auto", "cpu", "cuda", "cuda:N" or "mps"')


class ComponentSpec(BaseModel):
    """A named plugin component with its parameters: ``{name = "mixup", alpha = 0.2}``."""

    model_config = ConfigDict(extra="allow")

    name: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class MultilabelConfig(_Strict):
    """``task = "multilabel"``: how each label's decision is made (``engine/multilabel``)."""

    # per-label thresholds on validation: each label's best F1, or a precision target in (0, 1]
    threshold: Literal["f1"] | Annotated[float, Field(gt=0.0, le=1.0)] = "f1"
    # "balanced": each label's positives weigh as much as its negatives in the loss (both phases)
    pos_weight: Literal["none", "balanced"] = "none"


class AugmentConfig(_Strict):
    image: list[ComponentSpec] = Field(default_factory=list)
    batch: list[ComponentSpec] = Field(default_factory=list)


class Recipe(_Strict):
    """A complete, validated run description."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] = "run"
    seed: Seed = 0
    # "multilabel": several labels per image (a CSV manifest's label cells), sigmoid head, mAP
    task: Literal["single", "multilabel"] = "single"
    multilabel: MultilabelConfig | None = None  # task = "multilabel"'s settings (unset: the defaults)
    data: DataConfig = Field(default_factory=DataConfig)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    phases: Phases = Field(default_factory=Phases)
    train: TrainConfig = Field(default_factory=TrainConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    averaging: ComponentSpec | None = None

    @model_validator(mode="after")
    def _some_training(self) -> "Recipe":
        if self.phases.extract.epochs == 0 and self.phases.finetune.epochs == 0:
            raise ValueError("phases.extract.epochs and phases.finetune.epochs are both 0: nothing to train")
        return self

    @model_validator(mode="after")
    def _unlabeled_needs_the_probe(self) -> "Recipe":
        extract = self.phases.extract
        if self.data.unlabeled is not None and (not extract.probe or extract.epochs == 0):
            raise ValueError("data.unlabeled: the unlabelled images join phase 1's probe (pseudo-labels); it needs"
                             ' phases.extract.solver = "auto" or "lbfgs", cache_features = true and epochs >= 1')
        return self

    @model_validator(mode="after")
    def _task_settings(self) -> "Recipe":
        from .recipe_tasks import task_refusal, with_task_defaults

        refusal = task_refusal(with_task_defaults(self))
        if refusal is not None:
            raise ValueError(refusal)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data, with ``None`` dropped (TOML has no null)."""
        return _drop_none(self.model_dump(mode="json"))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
