"""The Python API: ``finetune`` a recipe (optionally on your own Dataset) and get a RunResult."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .engine.resume import parse_extend
from .engine.run import RunResult, run_recipe
from .engine.rundir.run_dir import RunDir
from .errors import RecipeError
from .progress import quiet as quiet_progress
from .recipe import Recipe
from .recipe_loading import RecipeSource, load_recipe

DEFAULT_RECIPE = Path(__file__).with_name("recipes") / "default.toml"


def finetune(
    recipe: RecipeSource | None = None,
    *,
    dataset: Any = None,
    val_dataset: Any = None,
    test_dataset: Any = None,
    output: str | Path | None = None,
    resume: str | Path | None = None,
    extend: Iterable[str] | Mapping[str, Any] | None = None,
    quiet: bool = False,
    on_step: Sequence[Callable[[dict[str, Any]], None]] = (),
    **overrides: Any,
) -> RunResult:
    """Fine-tune as a recipe says. ``recipe``: a TOML path, a dict or a Recipe; by default the
    recipe that ships in the package (``transferkit/recipes/default.toml``: every key at its
    default, which is not ``recipes/flowers.toml``: no label smoothing or warm-up, the backbone's
    image size, phase 1 at 5 epochs / lr 1e-3; see the README's "Python API"), or with ``resume``
    the run's own. ``overrides`` use double underscores for dots:
    ``finetune("r.toml", phases__extract__epochs=2)``.

    ``dataset``: any map-style dataset of ``(image, label)`` pairs or ``{"image", "label"}`` dicts
    (PIL, path, array or tensor images: uint8 0-255 or float in [0, 1]; labels: int indices or
    class names), with optional ``classes``; it replaces the recipe's data source and is read once
    and checked before training (see ``transferkit.data.user_datasets``). ``resume``: continue a
    run (a finished one is returned as it is, unless ``extend={"finetune": "+2"}`` adds epochs).
    ``on_step``: functions called after every optimizer step with ``{"phase", "epoch", "step",
    "steps", "lr", "loss"}`` (raise to stop). ``quiet``: no log lines and no progress bars."""
    if recipe is None:
        if dataset is None and resume is None:
            raise RecipeError("finetune: give a recipe (a TOML path, a dict or a Recipe), dataset=your_dataset, or resume=RUN_DIR")
        recipe = Path(resume) / "recipe.toml" if resume is not None else DEFAULT_RECIPE
    # the recipe's data source is not used with a Dataset handed in, nor by a finished run left as it is
    finished = resume is not None and not extend and RunDir(resume).is_finished
    resolved: Recipe = load_recipe(recipe, overrides, check_data=dataset is None and not finished)
    with quiet_progress(quiet):
        return run_recipe(
            resolved,
            output=output,
            resume=resume,
            extend=parse_extend(extend) if extend else None,
            dataset=dataset,
            val_dataset=val_dataset,
            test_dataset=test_dataset,
            on_step=list(on_step),
            log=(lambda _msg: None) if quiet else print,
        )
