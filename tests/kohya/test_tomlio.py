"""Whatever a caption, prompt or path contains, toml 0.10.2 reads back exactly what we wrote."""

from __future__ import annotations

import re

import pytest
import toml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wrapper.errors import ConfigError
from wrapper.kohya import tomlio
from wrapper.kohya.render import prompt_text_problems

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
scalar = st.one_of(text, st.booleans(), st.integers(-(2**63), 2**63 - 1),
                   st.floats(allow_nan=False, allow_infinity=False))
key = st.from_regex(r"\A[A-Za-z0-9_-]{1,12}\Z")


def _homogeneous(values: list) -> bool:
    return len({type(v) for v in values}) <= 1


table = st.dictionaries(key, st.one_of(scalar, st.lists(text, max_size=4), st.lists(st.integers(), max_size=4)),
                        max_size=6)
document = st.dictionaries(key, st.one_of(table, st.lists(table, min_size=1, max_size=2)), max_size=3)


@settings(max_examples=300, deadline=None)
@given(table)
def test_any_flat_table_round_trips(data: dict):
    assert toml.loads(tomlio.dumps(data)) == data


@settings(max_examples=150, deadline=None)
@given(document)
@example({"t": {"k": [",01,"]}})  # toml 0.10.2 raises IndexError on the plain spelling
def test_nested_tables_and_arrays_of_tables_round_trip(data: dict):
    assert toml.loads(tomlio.dumps(data)) == data


@settings(max_examples=300, deadline=None)
@given(text)
def test_any_string_is_quoted_losslessly(value: str):
    assert toml.loads(f"v = {tomlio.quote(value)}")["v"] == value


def test_mixed_arrays_and_nan_are_refused_up_front():
    with pytest.raises(ConfigError, match="one type"):
        tomlio.dumps({"resolution": [512, 768.0]})
    with pytest.raises(ConfigError, match="NaN"):
        tomlio.dumps({"lr": float("nan")})


# --- sample prompt lines, read the way sd-scripts reads them ---------------------------------

def sd_scripts_reads(line: str) -> dict:
    """library/train_util.py load_prompts + line_to_prompt_dict, for the keys gaze writes."""
    line = line.strip()
    parts = line.split(" --")
    out = {"prompt": parts[0]}
    patterns = [("width", r"w (\d+)"), ("height", r"h (\d+)"), ("seed", r"d (\d+)"),
                ("steps", r"s (\d+)"), ("scale", r"l ([\d\.]+)"), ("guidance", r"g ([\d\.]+)"),
                ("negative", r"n (.+)"), ("sampler", r"ss (.+)")]
    for part in parts:
        for name, pattern in patterns:
            m = re.match(pattern, part, re.IGNORECASE)
            if m:
                out[name] = m.group(1)
                break
    return out


prompt_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=50)


@settings(max_examples=500, deadline=None)
@given(prompt_text, st.one_of(st.just(""), prompt_text), st.floats(0.5, 30).map(lambda x: round(x, 3)))
@example("0", "--", 7.0)  # a negative starting with "--" meets the "n " before it as " --"
@example("a -", "b -", 7.0)
def test_prompt_lines_read_back_exactly(prompt: str, negative: str, cfg: float):
    from recipes import builtin_registry
    from wrapper.kohya.render import render_prompts
    from wrapper.recipe import SamplePrompt, evolve

    base = builtin_registry().recipes["sd15-standard"]
    recipe = evolve(base, sampling={"prompts": (SamplePrompt(prompt=prompt, negative=negative, seed=7),),
                                    "cfg": cfg})
    problems = prompt_text_problems(prompt, "p") + (prompt_text_problems(negative, "n", "n ") if negative else [])
    if problems or prompt.startswith("#"):
        with pytest.raises(ConfigError):
            render_prompts(recipe)
        return
    line = render_prompts(recipe).split("\n")[1]  # sd-scripts reads lines with readlines(): \n only
    read = sd_scripts_reads(line)
    assert read["prompt"] == prompt
    assert read.get("negative", "") == negative
    assert float(read["scale"]) == pytest.approx(cfg)
    assert (read["width"], read["height"], read["seed"], read["steps"]) == ("512", "768", "7", "20")
