"""The built-in experiments: one explicit registry of recipes and modifiers.

The same kebab-case name is the CLI argument, the Makefile target and the run-folder name.
"""

from __future__ import annotations

from pathlib import Path

from recipes.glitches import MODIFIERS
from recipes.smoke import SMOKES
from recipes.standard import BASELINES
from wrapper.recipe.registry import Registry, load_recipe_file

#: `make glitch-<name>`: each glitch of the log applied to the recipe it was studied on.
GLITCH_TARGETS = {
    "glitch-train-text-encoder": "sd15-standard+train-text-encoder",
    "glitch-uncropped": "sdxl-standard+uncropped",
    "glitch-no-bucket": "sd15-standard+no-bucket",
    "glitch-crop-flip": "sd15-standard+crop-flip",
    "glitch-high-lr": "sd15-standard+high-lr",
    "glitch-caption-dropout": "sd15-standard+caption-dropout",
    "glitch-overtrain": "sd15-standard+overtrain",
    "glitch-mismatched-base": "sd15-standard+mismatched-base",
    "glitch-jpeg-inject": "sdxl-standard+jpeg-inject",
}


def builtin_registry() -> Registry:
    registry = Registry()
    for recipe in (*BASELINES, *SMOKES):
        registry.add_recipe(recipe)
    for modifier in MODIFIERS:
        registry.add_modifier(modifier)
    for target, spec in GLITCH_TARGETS.items():
        registry.add_target(target, spec)
    return registry


def load_registry(user_file: Path | None = None) -> Registry:
    """The built-ins plus the recipes of a user's file (settings `recipes`, or $GAZE_RECIPES)."""
    registry = builtin_registry()
    if user_file is not None:
        load_recipe_file(registry, user_file)
    return registry
