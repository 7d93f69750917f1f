"""The Python API: ``finetune`` a recipe (optionally on your own Dataset) and get a RunResult."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from .engine.run import RunResult, run_recipe
from .recipe import Recipe
from .recipe_loading import RecipeSource, load_recipe


def finetune(
    recipe: RecipeSource = "recipes/quickstart.toml",
    *,
    dataset: Any = None,
    val_dataset: Any = None,
    test_dataset: Any = None,
    output: str | Path | None = None,
    resume: str | Path | None = None,
    quiet: bool = False,
    on_step: Sequence[Callable[[dict[str, Any]], None]] = (),
    **overrides: Any,
) -> RunResult:
    """Fine-tune as a recipe says. ``recipe``: a TOML path, a dict or a Recipe. ``overrides`` use
    double underscores for dots: ``finetune("r.toml", phases__extract__epochs=2)``. ``dataset``:
    any map-style dataset of ``(image, label)`` (PIL, array, tensor or path images) with optional
    ``classes``; it replaces the recipe's data source. ``on_step``: functions called after every
    optimizer step with ``{"phase", "epoch", "step", "steps", "lr", "loss"}`` (raise to stop)."""
    # with a Dataset handed in, the recipe's data source is not used: don't check its root
    resolved: Recipe = load_recipe(recipe, overrides, check_data=dataset is None)
    return run_recipe(
        resolved,
        output=output,
        resume=resume,
        dataset=dataset,
        val_dataset=val_dataset,
        test_dataset=test_dataset,
        on_step=list(on_step),
        log=(lambda _msg: None) if quiet else print,
    )

