"""Generation grids: the axes a user sweeps (sampler, steps, CFG, negative prompt, LoRA weight, base).

Written as words like `sampler=dpm++2m,euler steps=10,20,40 cfg=3,7,12 negative=on,off
weight=0.6,1.0 base=default,other`; every value is checked against a stated range before anything
runs (a base name against gaze.toml's [models] when the plan is made). GLITCH_GRID is the research
log's recipe for glitches at generation time (`gaze generate --glitch`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from wrapper.errors import ConfigError, collect, did_you_mean
from wrapper.kohya.prompt_lines import format_number
from wrapper.kohya.samplers import resolve_sampler

GRID_KEYS = ("sampler", "steps", "cfg", "negative", "weight", "base")
DEFAULT_BASE = "default"  # the checkpoint the run's LoRA was trained on; any other base is a mismatch
STEPS_RANGE = (1, 1000)  # gen_img.py silently clamps steps to this range
CFG_RANGE = (1.0, 30.0)  # at 1 gen_img.py skips classifier-free guidance, so the negative prompt is unused
WEIGHT_RANGE = (-2.0, 2.0)


@dataclass(frozen=True)
class Grid:
    """The values of each axis, in the order given; the defaults are the research log's settings."""

    sampler: tuple[str, ...] = ("dpm++2m",)
    steps: tuple[int, ...] = (20,)
    cfg: tuple[float, ...] = (7.0,)
    negative: tuple[bool, ...] = (True,)
    weight: tuple[float, ...] = (1.0,)
    base: tuple[str, ...] = (DEFAULT_BASE,)  # "default", or checkpoints named in gaze.toml [models] (or paths)

    @property
    def size(self) -> int:
        """Images per prompt, seed and checkpoint."""
        return math.prod(len(getattr(self, key)) for key in GRID_KEYS)

    def as_dict(self) -> dict[str, list]:
        """JSON-ready values, negative as "on"/"off"."""
        return {
            "sampler": list(self.sampler),
            "steps": list(self.steps),
            "cfg": list(self.cfg),
            "negative": ["on" if n else "off" for n in self.negative],
            "weight": list(self.weight),
            "base": list(self.base),
        }


#: `gaze generate RUN --glitch`, the research log: "To induce glitches during generation with this LoRA
#: don't use a negative prompt and mess around with the generation configs like reducing or adding
#: sampling steps and increase/decrease cfg scale." Its two samplers, the negative prompt off against
#: on, steps from very few to many and CFG from very low to very high, each around the log's own
#: 20 steps and CFG 7 (which the grid keeps, as the reference image). 100 images per prompt and seed,
#: on the log's two prompts (GLITCH_PROMPTS of the built-in file). Grid words given with --glitch
#: replace that axis.
GLITCH_GRID = Grid(
    sampler=("dpm++2m", "euler"),
    steps=(3, 8, 20, 50, 150),
    cfg=(1.5, 4.0, 7.0, 14.0, 30.0),
    negative=(False, True),
)
GLITCH_PROMPTS = (1, 2)  # the research log's prompts: the first two of recipes/prompts.txt


def _parse_value(key: str, text: str) -> object:
    if key == "sampler":
        return resolve_sampler(text)[0]
    if key == "negative":
        if text.lower() not in ("on", "off"):
            raise ValueError("expected on or off")
        return text.lower() == "on"
    if key == "base":
        if not text:
            raise ValueError("expected 'default' or a checkpoint name from gaze.toml [models]")
        return text
    low, high = {"steps": STEPS_RANGE, "cfg": CFG_RANGE, "weight": WEIGHT_RANGE}[key]
    value = int(text) if key == "steps" else float(text)
    if not low <= value <= high:  # also false for NaN
        raise ValueError(f"out of range; expected {format_number(low)} to {format_number(high)}")
    return value


def parse_grid(tokens: Sequence[str], base: Grid | None = None) -> Grid:
    """Parse grid words; one ConfigError lists every problem. Keys left out keep `base`'s values
    (the defaults, or a preset such as GLITCH_GRID)."""
    values: dict[str, tuple] = {}
    problems: list[str] = []
    for token in tokens:
        key, eq, text = token.partition("=")
        key = key.strip().lower()
        if not eq:
            problems.append(f"{token!r}: expected KEY=VALUE[,VALUE...] with KEY one of {', '.join(GRID_KEYS)}")
            continue
        if key not in GRID_KEYS:
            problems.append(f"unknown grid key {key!r}{did_you_mean(key, GRID_KEYS)}; expected {', '.join(GRID_KEYS)}")
            continue
        if key in values:
            problems.append(f"grid key {key!r} is given twice; list all its values once: {key}=A,B")
            continue
        parsed = []
        for item in (part.strip() for part in text.split(",")):
            try:
                parsed.append(_parse_value(key, item))
            except ConfigError as exc:
                problems.append(str(exc))
            except ValueError as exc:
                kind = {"steps": "an integer", "base": "a checkpoint name"}.get(key, "a number")
                reason = str(exc) if str(exc).startswith(("out of", "expected")) else f"expected {kind}"
                problems.append(f"grid key {key!r}: value {item!r} is not valid ({reason})")
        if len(set(parsed)) != len(parsed):
            problems.append(f"grid key {key!r}: a value is listed twice in {text!r}")
        values[key] = tuple(parsed)
    collect(problems, ConfigError, "bad --grid")
    return dataclasses.replace(base or Grid(), **values)


def parse_seeds(text: str) -> tuple[int, ...]:
    """Parse `1,2,3`: distinct integers from 0 to 2**32-1 (gen_img.py's seed range)."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"option --seeds: {text!r} is not a comma-separated list of integers") from None
    if any(not 0 <= s < 2**32 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"option --seeds: {text!r}: expected distinct integers from 0 to {2**32 - 1}")
    return seeds
