"""The Recipe model, its checks, the registry of names and modifiers, and diffs between recipes.

`from wrapper.recipe import Recipe, evolve` is the API for user recipe files.
"""

from wrapper.recipe.checks import recipe_problems, validate
from wrapper.recipe.model import (
    FAMILIES,
    Buckets,
    Data,
    Family,
    Network,
    Optimizer,
    Prep,
    Recipe,
    SamplePrompt,
    Sampling,
    Training,
    evolve,
)

__all__ = [
    "FAMILIES", "Buckets", "Data", "Family", "Network", "Optimizer", "Prep", "Recipe", "SamplePrompt", "Sampling",
    "Training", "evolve", "recipe_problems", "validate",
]
