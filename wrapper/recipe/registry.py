"""Named recipes and modifiers, recipe specs ("base+modifier+modifier=value") and sweeps."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from wrapper.errors import RecipeError, did_you_mean
from wrapper.recipe.checks import validate
from wrapper.recipe.model import Recipe

ModifierFn = Callable[[Recipe, str | None], Recipe]


@dataclass(frozen=True)
class Modifier:
    """A named change to any recipe. `glitch` marks the deliberate glitches of the research log."""

    name: str
    apply: ModifierFn
    help: str
    glitch: bool = True
    default: str | None = None  # the value used when the spec gives none; None: takes no value
    conflicts: frozenset[str] = frozenset()
    parse: Callable[[str], object] = float


@dataclass
class Registry:
    """One explicit registry: a name registered twice is an error."""

    recipes: dict[str, Recipe] = field(default_factory=dict)
    modifiers: dict[str, Modifier] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)  # make target -> recipe spec

    def add_recipe(self, recipe: Recipe) -> Recipe:
        if recipe.name in self.recipes or recipe.name in self.modifiers:
            raise RecipeError(f"recipe name {recipe.name!r} is registered twice")
        self.recipes[recipe.name] = validate(recipe)
        return recipe

    def add_modifier(self, modifier: Modifier) -> Modifier:
        if modifier.name in self.modifiers or modifier.name in self.recipes:
            raise RecipeError(f"modifier name {modifier.name!r} is registered twice")
        self.modifiers[modifier.name] = modifier
        return modifier

    def add_target(self, target: str, spec: str) -> None:
        if target in self.targets or target in self.recipes:
            raise RecipeError(f"target name {target!r} is registered twice")
        self.resolve(spec)  # a target must name something that resolves
        self.targets[target] = spec

    def resolve(self, spec: str) -> Recipe:
        """Turn 'base+mod+mod=value' (or a named target) into a validated recipe."""
        spec = self.targets.get(spec.strip(), spec.strip())
        base_name, *parts = spec.split("+")
        if base_name not in self.recipes:
            hint = did_you_mean(base_name, [*self.recipes, *self.targets])
            raise RecipeError(f"unknown recipe {base_name!r}{hint}; `gaze recipes` lists them")
        recipe = self.recipes[base_name]
        seen: dict[str, str] = {}
        applied: list[str] = []
        glitches: list[str] = []
        for part in parts:
            name, equals, value = part.partition("=")
            modifier = self._modifier(name, spec)
            if equals and not value.strip():
                raise RecipeError(f"modifier {name!r} in {spec!r} has an empty value after '='; give a value "
                                  f"(like {name}={modifier.default}) or leave out '=' for the default")
            if name in seen:
                raise RecipeError(f"modifier {name!r} is given twice in {spec!r}")
            clash = modifier.conflicts & seen.keys()
            if clash:
                raise RecipeError(
                    f"modifiers {name!r} and {sorted(clash)[0]!r} conflict in {spec!r}: {modifier.help}"
                )
            value = self._value(modifier, value or None, spec)
            seen[name] = part
            recipe = modifier.apply(recipe, value)
            label = name if value is None else f"{name}={value}"
            applied.append(label)
            if modifier.glitch:
                glitches.append(label)
        if not parts:
            return recipe
        name = "+".join([base_name, *applied])
        recipe = recipe.replace(
            name=name,
            baseline=recipe.baseline or base_name,
            modifiers=(*recipe.modifiers, *applied),
            glitches=(*recipe.glitches, *glitches),
        )
        return validate(recipe)

    def _modifier(self, name: str, spec: str) -> Modifier:
        if name not in self.modifiers:
            hint = did_you_mean(name, self.modifiers)
            raise RecipeError(f"unknown modifier {name!r} in {spec!r}{hint}; `gaze recipes` lists them")
        return self.modifiers[name]

    @staticmethod
    def _value(modifier: Modifier, raw: str | None, spec: str) -> str | None:
        if raw is None:
            return modifier.default
        if modifier.default is None:
            raise RecipeError(f"modifier {modifier.name!r} takes no value, got {raw!r} in {spec!r}")
        try:
            modifier.parse(raw)
        except ValueError:
            raise RecipeError(
                f"modifier {modifier.name!r} in {spec!r}: {raw!r} is not a valid value "
                f"(expected something like {modifier.default!r})"
            ) from None
        return raw


def sweep(base: str, modifiers: Iterable[str]) -> list[str]:
    """One baseline plus each modifier alone: [base, base+m1, base+m2, ...], in the given order.

    A modifier written 'a+b' stays one combined run. Duplicates are dropped, order is kept.
    """
    specs = [base] + [f"{base}+{m.strip('+ ')}" for m in modifiers]
    return list(dict.fromkeys(specs))


def load_recipe_file(registry: Registry, path: Path) -> list[str]:
    """Register the recipes (RECIPES) and modifiers (MODIFIERS) a user's Python file defines.

    A mistake in the file (a misspelled field, a bad value) becomes one RecipeError naming the
    file, the line and the closest correct name.
    """
    import importlib.util

    if not path.is_file():
        what = "is a folder, not a Python file" if path.is_dir() else "does not exist"
        raise RecipeError(f"recipe file {path} {what} (named by `recipes` in gaze.toml or $GAZE_RECIPES)")
    spec = importlib.util.spec_from_file_location(f"gaze_user_recipes_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except TypeError as exc:
        raise RecipeError(f"{_where(exc, path)}: {_explain_type_error(exc)}") from None
    except RecipeError as exc:
        raise RecipeError(f"{_where(exc, path)}: {exc}") from None
    except SyntaxError as exc:
        raise RecipeError(f"{path}:{exc.lineno}: not valid Python: {exc.msg}") from None
    except Exception as exc:  # the user's own code: whatever it raises becomes one line naming where
        raise RecipeError(f"{_where(exc, path)}: importing the recipe file raised {type(exc).__name__}: {exc}"
                          ) from None
    names = []
    for attr, kind, add in (("RECIPES", Recipe, registry.add_recipe), ("MODIFIERS", Modifier, registry.add_modifier)):
        items = getattr(module, attr, ())
        if not isinstance(items, list | tuple):
            raise RecipeError(f"{path}: {attr} is a {type(items).__name__}; expected a tuple or list of "
                              f"{kind.__name__}")
        for i, item in enumerate(items):
            if not isinstance(item, kind):
                raise RecipeError(f"{path}: {attr}[{i}] is a {type(item).__name__}; expected a {kind.__name__}")
            try:
                names.append(add(item).name)
            except RecipeError as exc:
                raise RecipeError(f"{path}: {attr}[{i}]: {exc}") from None
    if not names:
        raise RecipeError(f"{path}: defines no RECIPES or MODIFIERS to register")
    return names


def _where(exc: BaseException, path: Path) -> str:
    import traceback

    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f"{path}:{lines[-1]}" if lines else str(path)


def _explain_type_error(exc: TypeError) -> str:
    """'Network.__init__() got an unexpected keyword argument 'netwrok_dim'' -> a did-you-mean."""
    import dataclasses
    import re

    import wrapper.recipe.model as model

    match = re.search(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", str(exc))
    if not match:
        return str(exc)
    cls, field_name = getattr(model, match[1], None), match[2]
    if cls is None or not dataclasses.is_dataclass(cls):
        return str(exc)
    fields = [f.name for f in dataclasses.fields(cls)]
    return f"{match[1]} has no field {field_name!r}{did_you_mean(field_name, fields)}; its fields: {', '.join(fields)}"
