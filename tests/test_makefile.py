"""The Makefile's recipe and glitch targets are the registry's names, and each target is a call of gaze."""

from __future__ import annotations

import re
from pathlib import Path

from recipes import builtin_registry

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def _list(name: str) -> list[str]:
    text = MAKEFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    match = re.search(rf"^{name}\s*:=(.*)$", text, re.M)
    assert match, f"Makefile has no {name} list"
    return match[1].split()


def test_recipe_targets_are_the_registered_recipes():
    assert _list("RECIPES") == list(builtin_registry().recipes)


def test_glitch_targets_are_the_registered_targets():
    assert _list("GLITCHES") == list(builtin_registry().targets)
