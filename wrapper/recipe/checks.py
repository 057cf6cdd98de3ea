"""Check a recipe's own values: every problem collected before one error is raised."""

from __future__ import annotations

import dataclasses
import itertools
import math
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from wrapper.errors import RecipeError, collect
from wrapper.recipe.model import MAX_SIDE, MIN_SIDE, Recipe


def _positive(problems: list[str], where: str, value: float | int | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append(f"{where} = {value!r}: expected a finite number")
    elif value < 0 or (value == 0 and not allow_zero):
        problems.append(f"{where} = {value!r}: expected a number {'>= 0' if allow_zero else '> 0'}")


def _fraction(problems: list[str], where: str, value: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        problems.append(f"{where} = {value!r}: expected a fraction between 0 and 1")


def _size(problems: list[str], where: str, size: Any) -> None:
    ok = isinstance(size, tuple) and len(size) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and MIN_SIDE <= v <= MAX_SIDE for v in size)
    if not ok:
        problems.append(f"{where} = {size!r}: expected (width, height), each {MIN_SIDE}..{MAX_SIDE} pixels")


def type_problem(value: Any, hint: Any) -> str | None:
    """What `value` should have been to match the annotation `hint`, or None when it matches.

    Exact where Python's own checks are loose: a bool is not an int, an int is a float.
    """
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return None
    if origin is Literal:
        return None if value in args and type(value) in {type(a) for a in args} else (
            "one of " + ", ".join(map(repr, args)))
    if origin in (Union, UnionType):
        wanted = [type_problem(value, a) for a in args]
        return None if None in wanted else " or ".join(dict.fromkeys(w for w in wanted if w))
    if hint is type(None):
        return None if value is None else "none"
    if origin is tuple:
        if not isinstance(value, tuple):
            return "a tuple" if Ellipsis in args else f"a tuple of {len(args)}"
        items = list(zip(value, itertools.repeat(args[0]))) if Ellipsis in args[1:] else None
        if items is None:
            if len(value) != len(args):
                return f"a tuple of {len(args)}"
            items = list(zip(value, args, strict=True))
        wrong = next((w for v, a in items if (w := type_problem(v, a))), None)
        return f"a tuple of {wrong}" if wrong else None
    if origin is list:
        item = type_problem(object(), args[0]) if args else None  # what one element must be
        wanted = f"a list of {item.removeprefix('a ').removeprefix('an ')}s" if item else "a list"
        if not isinstance(value, list):
            return wanted
        return wanted if args and any(type_problem(v, args[0]) for v in value) else None
    if origin is dict:
        return None if isinstance(value, dict) else "an object"
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if isinstance(hint, type):
        return None if isinstance(value, hint) else f"a {hint.__name__}"
    return None


#: sd-scripts reads integers into 32-bit fields (steps, sizes, seeds): anything larger overflows there.
INT_LIMIT = 2**31 - 1


def out_of_range(value: Any) -> Any:
    """The first number in `value` (nested tuples included) that sd-scripts cannot hold, or None."""
    if isinstance(value, tuple):
        return next((bad for v in value if (bad := out_of_range(v)) is not None), None)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return value
    return None


def _typed_fields(problems: list[str], group_name: str, group: Any) -> None:
    """Check every field of one group against its annotation (Literal, unions, optionals, tuples)."""
    hints = get_type_hints(type(group))
    for f in dataclasses.fields(group):
        value = getattr(group, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            continue  # nested groups are checked on their own
        wanted = type_problem(value, hints[f.name])
        if wanted:
            problems.append(f"{group_name}.{f.name} = {value!r}: expected {wanted}")
        elif (bad := out_of_range(value)) is not None:
            problems.append(f"{group_name}.{f.name}: {bad!r} is beyond what sd-scripts can hold; expected a finite "
                            f"number of at most {INT_LIMIT} in size")


def recipe_problems(recipe: Recipe) -> list[str]:
    """Every problem with a recipe's own values (no files, no sd-scripts needed)."""
    problems: list[str] = []
    for name in ("training", "data", "prep", "network", "optimizer", "sampling"):
        _typed_fields(problems, name, getattr(recipe, name))
    _typed_fields(problems, "data.buckets", recipe.data.buckets)
    _typed_fields(problems, "recipe", recipe)
    if problems:
        return problems  # value checks below assume the types are right

    t, d, o, n, p, s = (
        recipe.training,
        recipe.data,
        recipe.optimizer,
        recipe.network,
        recipe.prep,
        recipe.sampling,
    )
    _positive(problems, "training.max_train_steps", t.max_train_steps)
    _positive(problems, "training.batch_size", t.batch_size)
    _positive(problems, "training.gradient_accumulation_steps", t.gradient_accumulation_steps)
    _positive(problems, "training.save_every_n_steps", t.save_every_n_steps)
    _positive(problems, "training.validate_every_n_steps", t.validate_every_n_steps)
    _positive(problems, "training.max_data_loader_n_workers", t.max_data_loader_n_workers, allow_zero=True)
    _positive(problems, "optimizer.unet_lr", o.unet_lr)
    _positive(problems, "optimizer.text_encoder_lr", o.text_encoder_lr)
    _positive(problems, "optimizer.warmup_steps", o.warmup_steps, allow_zero=True)
    _positive(problems, "optimizer.max_grad_norm", o.max_grad_norm, allow_zero=True)
    _positive(problems, "network.dim", n.dim)
    _positive(problems, "network.alpha", n.alpha)
    _positive(problems, "data.num_repeats", d.num_repeats)
    _positive(problems, "data.keep_tokens", d.keep_tokens, allow_zero=True)
    _positive(problems, "training.noise_offset", t.noise_offset, allow_zero=True)
    _positive(problems, "training.min_snr_gamma", t.min_snr_gamma)
    _positive(problems, "sampling.steps", s.steps)
    _positive(problems, "sampling.every_n_steps", s.every_n_steps)
    _size(problems, "data.resolution", d.resolution)
    _size(problems, "prep.portrait", p.portrait)
    _size(problems, "prep.landscape", p.landscape)
    for where, value in (("prep.square", p.square), ("prep.stretch_to", p.stretch_to)):
        if value is not None:
            _size(problems, where, value)
    for where, value in (
        ("data.caption_dropout_rate", d.caption_dropout_rate),
        ("data.caption_tag_dropout_rate", d.caption_tag_dropout_rate),
        ("data.validation_split", d.validation_split),
        ("prep.jpeg_fraction", p.jpeg_fraction),
    ):
        _fraction(problems, where, value)
    if n.dropout is not None:
        _fraction(problems, "network.dropout", n.dropout)
    if not 1 <= p.jpeg_quality <= 95:
        problems.append(f"prep.jpeg_quality = {p.jpeg_quality}: expected 1..95")
    if not 0 < s.cfg <= 100:
        problems.append(f"sampling.cfg = {s.cfg!r}: expected a number in (0, 100]")
    if p.mode == "stretch" and p.stretch_to is None:
        problems.append("prep.stretch_to: mode 'stretch' needs the fixed size to stretch to")
    for a in (*n.args, *o.args):
        if "=" not in a:
            problems.append(f"argument {a!r} in network.args/optimizer.args: expected 'key=value'")
    if not recipe.name or any(c.isspace() or c in "/\\" for c in recipe.name):
        problems.append(f"name = {recipe.name!r}: expected a non-empty name without spaces or slashes")
    return problems


def validate(recipe: Recipe) -> Recipe:
    """Return the recipe unchanged, or raise one RecipeError that lists every problem."""
    collect(recipe_problems(recipe), RecipeError, f"recipe {recipe.name!r} has invalid values")
    return recipe
