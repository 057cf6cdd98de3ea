"""Property tests: on curves of many shapes, sizes, scales and noise levels, no two verdicts contradict.

The frames are built in memory in tblog's shape (reading event files is tested elsewhere), so that
hypothesis can try hundreds of curves in a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wrapper.curves import verdicts as curves

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T = curves.Thresholds()


def frame_of(values: np.ndarray) -> pd.DataFrame:
    """A scalars frame (as wrapper.curves.tblog returns) holding `values` as loss/current from step 1."""
    n = len(values)
    return pd.DataFrame(
        {
            "run": pd.Categorical(["run"] * n),
            "tag": pd.Categorical(["loss/current"] * n),
            "step": np.arange(1, n + 1, dtype=np.int64),
            "value": np.asarray(values, float),
            "wall_time": 1.7e9 + np.arange(n, dtype=float),
        }
    )


def curve(shape: str, n: int, fall: float, noise: float, seed: int) -> np.ndarray:
    """A loss curve of unit start: `fall` is how much of it a falling shape loses, `noise` a fraction of 1."""
    rng = np.random.default_rng(seed)
    x = np.arange(n) / max(n - 1, 1)
    end = 1 - fall
    y = {
        "linear fall": 1 - fall * x,
        "exponential fall": end + fall * np.exp(-5 * x),
        "flat": np.ones(n),
        "rising": 1 + fall * x,
        "noisy": np.ones(n),
        "spiky": end + fall * np.exp(-5 * x),
        "plateau then drop": np.interp(x, [0, 0.2, 0.55, 0.75, 1], [1, 1 - fall / 2, 1 - fall / 2, end, end]),
        "oscillating": 1 - fall / 2 + fall / 2 * np.sin(2 * math.pi * 4 * x),
    }[shape]
    y = y + rng.normal(0, noise * (10 if shape == "noisy" else 1), n)
    if shape == "spiky":
        y[rng.choice(n, size=max(1, n // 200), replace=False)] += 5
    return y


curves_strategy = st.tuples(
    st.sampled_from(
        ["linear fall", "exponential fall", "flat", "rising", "noisy", "spiky", "plateau then drop", "oscillating"]
    ),
    st.integers(30, 3000),  # points
    st.floats(0.5, 0.97),  # fall
    st.floats(0, 0.02),  # noise sigma, a fraction of the initial loss
    st.floats(0.01, 100),  # scale of the loss
    st.integers(0, 2**32 - 1),  # seed
)


def table_of(values: np.ndarray) -> dict[str, curves.Verdict]:
    return {v.metric: v for v in curves.verdicts(frame_of(values))}


def assert_consistent(table: dict[str, curves.Verdict]) -> None:
    """Pairs of verdicts that must agree, whatever the curve."""
    conv, plat, osc, under = (table[m] for m in ("Convergence", "Plateaus", "Oscillation", "Under-fitting"))
    short = [v.status == "too short" for v in (conv, plat, osc)]
    assert all(short) or not any(short), (conv, plat, osc)  # one notion of "enough blocks"
    whole = "(whole run)" in plat.notes
    reaches_end = whole or "(to the end)" in plat.notes
    # plateau vs convergence: a flat end is a converged run, and a converged run ends on a plateau
    assert (conv.status == "converged") == reaches_end, (conv, plat)
    if whole:
        assert under.status == "possible" and osc.status == "none", (plat, under, osc)
    # under-fitting vs the fall from initial to final
    first, last = float(table["Initial loss"].status), float(table["Final loss"].status)
    drop = (first - last) / abs(first) if first else math.nan
    if under.status == "possible":  # the statuses are rounded to 4 digits
        assert drop < T.underfit_drop + 1e-3 or "within the noise" in under.notes or whole, (under, drop)
    if under.status == "still learning":
        assert conv.status == "still decreasing" and drop >= T.underfit_drop - 1e-3, (under, conv)
    if conv.status == "still decreasing" and under.status not in ("too short", "not measurable"):
        assert under.status in ("possible", "still learning"), (conv, under)
    if under.status == "not seen":
        assert conv.status != "still decreasing" and drop >= T.underfit_drop - 1e-3, (under, conv)
    # oscillation vs a flat run: an oscillation needs moves, a whole-run plateau has none
    if osc.status == "oscillating":
        assert not whole and int(osc.notes.split()[0]) >= T.oscillation_reversals


def clear(n: int, fall: float, noise: float) -> bool:
    """Whether a linear fall moves between neighbouring blocks by well over what the noise can hide."""
    blocks = max(1, min(T.blocks, n // T.block_points))
    se = 1.2533 * noise / math.sqrt(n / blocks)
    return fall / blocks > 3 * T.level_se * math.sqrt(2) * se


@PROPS
@given(curves_strategy)
def test_verdicts_never_contradict_each_other(params):
    shape, n, fall, noise, scale, seed = params
    table = table_of(scale * curve(shape, n, fall, noise, seed))
    assert_consistent(table)
    conv, plat, osc, under = (table[m] for m in ("Convergence", "Plateaus", "Oscillation", "Under-fitting"))
    if conv.status == "too short":
        return
    if shape == "linear fall" and clear(n, fall, noise):  # falls steadily to the end: never flat
        assert conv.status == "still decreasing" and under.status == "still learning", (conv, under)
        assert "(whole run)" not in plat.notes and "(to the end)" not in plat.notes
    if shape in ("linear fall", "exponential fall", "rising", "spiky"):  # monotone (spikes aside)
        assert osc.status == "none", osc
    if shape == "rising":
        assert under.status == "possible" and (conv.status == "rising" or not clear(n, fall, noise)), (conv, under)
    if shape == "flat":
        assert under.status == "possible"
    if shape in ("linear fall", "exponential fall", "spiky", "plateau then drop"):
        # a large fall (half the loss or more, with a little noise) is never "barely learnt", nor one plateau
        assert under.status in ("not seen", "still learning") and "(whole run)" not in plat.notes, (under, plat)


@pytest.mark.parametrize("shape", ["linear fall", "exponential fall"])
@pytest.mark.parametrize("n", [40, 100, 1000, 5000])
def test_a_95_percent_fall_is_not_a_plateau(shape, n):
    """The reported case: 1.0 -> 0.05 with a little noise was "one plateau over the whole run"."""
    table = table_of(curve(shape, n, 0.95, 0.01, seed=n))
    assert_consistent(table)
    assert "(whole run)" not in table["Plateaus"].notes
    assert table["Under-fitting"].status in ("not seen", "still learning")
    if shape == "linear fall":
        assert table["Convergence"].status == "still decreasing" and table["Plateaus"].status == "none"


def test_a_slow_steady_fall_is_not_a_plateau():
    """Moves under 1% between neighbouring blocks still add up: 20 blocks falling 0.9% each lose 16%."""
    table = table_of(np.geomspace(1.0, 0.84, 2000))
    assert_consistent(table)
    assert table["Plateaus"].status == "none" and table["Convergence"].status == "still decreasing"
