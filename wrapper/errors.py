"""One exception family for mistakes a user can fix; the CLI prints them without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GazeError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class RecipeError(GazeError):
    """A recipe, modifier or recipe value is wrong."""


class ConfigError(GazeError):
    """A rendered or user-supplied kohya config is wrong."""


class DatasetError(GazeError):
    """A dataset folder, image or caption is wrong."""


class RunError(GazeError):
    """A run cannot be started, resumed or read."""


class TrainerNotFound(RunError):
    """No usable sd-scripts checkout."""


class TrainExtraMissing(RunError):
    """sd-scripts is there, but the packages it needs to run (the `train` extra) are not installed."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def collect(problems: list[str], error: type[GazeError], heading: str) -> None:
    """Raise `error` listing every problem under `heading`, or return when there are none."""
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise error(f"{heading}:\n{lines}")
