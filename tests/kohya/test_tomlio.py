"""Whatever a caption, prompt or path contains, toml 0.10.2 reads back exactly what we wrote."""

from __future__ import annotations

import pytest
import toml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wrapper.errors import ConfigError
from wrapper.kohya import tomlio

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
@example({"t": {"k": ["\x1f\\u"]}})
def test_nested_tables_and_arrays_of_tables_round_trip(data: dict):
    assert toml.loads(tomlio.dumps(data)) == data


@settings(max_examples=300, deadline=None)
@given(text)
@example("\x1f\\u")  # toml 0.10.2 reads "\u001f\\u" as an invalid escape: the backslash is written as \u005c
@example("\x1f\\u,")
def test_any_string_is_quoted_losslessly(value: str):
    assert toml.loads(f"v = {tomlio.quote(value)}")["v"] == value


def test_mixed_arrays_and_nan_are_refused_up_front():
    with pytest.raises(ConfigError, match="one type"):
        tomlio.dumps({"resolution": [512, 768.0]})
    with pytest.raises(ConfigError, match="NaN"):
        tomlio.dumps({"lr": float("nan")})

