"""Smoothing as TensorBoard does it, and verdicts on curves of known shape read from real event files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import runfactory as rf
from hypothesis import given, settings
from hypothesis import strategies as st

from wrapper.curves import smoothing
from wrapper.curves import verdicts as curves
from wrapper.errors import GazeError
from wrapper.runs.layout import read_run_scalars

N = 1200


def tensorboard_smoothing(values: list[float], weight: float) -> list[float]:
    """A line-by-line transcription of TensorBoard's classic smoothing loop, as the reference."""
    if all(v == values[0] for v in values):
        return list(values)
    last, count, out = 0.0, 0, []
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1 - weight) * v
        count += 1
        out.append(last / (1 - weight**count))
    return out


def test_tensorboards_own_example():
    assert smoothing.smooth([1, 0.5, 0], 0.6) == pytest.approx([1, 0.6875, 0.33673469], abs=1e-8)


def test_non_finite_points_pass_through_and_do_not_count():
    out = smoothing.smooth([math.nan, 1, math.inf, 0.5, 0], 0.6)
    assert math.isnan(out[0]) and out[2] == math.inf
    assert out[[1, 3, 4]] == pytest.approx([1, 0.6875, 0.33673469], abs=1e-8)


def test_constant_series_and_weight_zero_are_left_as_is():
    assert smoothing.smooth([0.25] * 5, 0.9).tolist() == [0.25] * 5
    assert smoothing.smooth([3.0, 1.0, 2.0], 0).tolist() == [3.0, 1.0, 2.0]
    assert len(smoothing.smooth([], 0.6)) == 0


@pytest.mark.parametrize("weight", [-0.1, 1.0, math.nan])
def test_weight_out_of_range(weight):
    with pytest.raises(GazeError, match="smoothing weight"):
        smoothing.smooth([1.0, 2.0], weight)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.floats(-1e6, 1e6), st.sampled_from([math.nan, math.inf, -math.inf])), min_size=1),
    st.floats(0, 0.999),
)
def test_matches_tensorboards_loop(values, weight):
    expected = tensorboard_smoothing(values, weight)
    got = smoothing.smooth(values, weight)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-6)


def verdicts_of(tmp_path, loss, **options) -> dict[str, curves.Verdict]:
    run = rf.make_run(tmp_path, loss=loss, **options)
    return {v.metric: v for v in curves.verdicts(read_run_scalars(run))}


def test_every_verdict_prints_its_rule(tmp_path):
    table = verdicts_of(tmp_path, rf.converging(N))
    assert list(table) == list(curves.METRICS)
    assert all(v.rule for v in table.values())
    assert "the last 3 blocks are all level" in table["Convergence"].rule and "above 10.0" in table["Spikes"].rule
    assert "at most max(1% of the lower, 3 combined standard errors" in table["Plateaus"].rule
    assert "by less than 5% of the initial loss" in table["Under-fitting"].rule


def test_converging_run(tmp_path):
    table = verdicts_of(tmp_path, rf.converging(N))
    assert table["Convergence"].status == "converged"
    assert table["Under-fitting"].status == "not seen"
    assert table["Spikes"].status == "none" and table["NaN / inf"].status == "none"
    assert table["Oscillation"].status == "none"
    assert "(to the end)" in table["Plateaus"].notes
    assert float(table["Initial loss"].status) == pytest.approx(0.25, abs=0.01)
    assert float(table["Final loss"].status) == pytest.approx(0.1, abs=0.01)
    assert table["Over-fitting"].notes == "not measurable without a validation split"


def test_still_decreasing_run_is_still_learning(tmp_path):
    table = verdicts_of(tmp_path, rf.still_decreasing(N))
    assert (table["Convergence"].status, table["Convergence"].level) == ("still decreasing", "warn")
    # it fell by two thirds: "possible under-fitting" would contradict that; it was stopped while learning
    assert (table["Under-fitting"].status, table["Under-fitting"].level) == ("still learning", "warn")
    assert table["Plateaus"].status == "none"


def test_plateau_in_the_middle(tmp_path):
    table = verdicts_of(tmp_path, rf.plateau_then_drop(N))
    spans = [tuple(map(int, s.split()[1].split("-"))) for s in table["Plateaus"].notes.split("; ")]
    assert any(a <= 0.3 * N and b >= 0.5 * N for a, b in spans)  # the flat stretch from 20% to 55%


def test_spikes_are_found_at_their_steps(tmp_path):
    table = verdicts_of(tmp_path, rf.spiking(N, at=(300, 700)))
    assert table["Spikes"].status == "2 spikes" and table["Spikes"].level == "warn"
    assert "301 (z" in table["Spikes"].notes and "701 (z" in table["Spikes"].notes  # steps start at 1


def test_diverging_run(tmp_path):
    table = verdicts_of(tmp_path, rf.diverging(N))
    assert (table["Convergence"].status, table["Convergence"].level) == ("rising", "bad")
    assert "loss rose" in table["Under-fitting"].notes


def test_oscillating_run(tmp_path):
    assert verdicts_of(tmp_path, rf.oscillating(N))["Oscillation"].status == "oscillating"


def test_nan_losses(tmp_path):
    loss = rf.converging(N)
    loss[[500, 900]] = math.nan
    table = verdicts_of(tmp_path, loss)
    assert table["NaN / inf"].level == "bad"
    assert table["NaN / inf"].notes == "2 NaN, 0 inf; first at step 501"
    assert table["Convergence"].status == "converged"  # judged on the finite points


def test_constant_series(tmp_path):
    table = verdicts_of(tmp_path, np.full(200, 0.125))
    assert table["Final loss"].status == "0.125" and table["Convergence"].status == "converged"
    assert table["Spikes"].level == "n/a" and table["Under-fitting"].status == "possible"


def test_missing_loss_tags(tmp_path):
    run = rf.make_run(tmp_path, loss=None)
    table = {v.metric: v for v in curves.verdicts(read_run_scalars(run))}
    assert all(v.level == "n/a" for v in table.values())
    assert table["Final loss"].notes == "no loss/current or loss/average in the logs"
    assert curves.final_loss(read_run_scalars(run)) is None


def test_other_tags_than_sd_scripts_are_named(tmp_path):
    tags = [f"custom/{i:02d}" for i in range(10)]
    rf.write_events(tmp_path / "logs" / "1" / "t", [(t, s, 1 / s) for s in range(1, 5) for t in tags])
    frame = read_run_scalars(tmp_path)
    why = curves.loss_missing(frame)
    assert why.startswith("no loss/current or loss/average in the logs; they hold 10 other tags: custom/00, ")
    assert "custom/07 and 2 more (sd-scripts writes loss/current, loss/average, loss/epoch_average" in why
    assert all(v.notes == why for v in curves.verdicts(frame) if v.status == "no data")
    assert curves.loss_missing(read_run_scalars(tmp_path / "none")) == "no loss/current or loss/average in the logs"


def test_loss_average_is_used_when_loss_current_is_missing(tmp_path):
    rf.write_events(tmp_path / "logs" / "1" / "t", [("loss/average", s, 1 / s) for s in range(1, 50)])
    frame = read_run_scalars(tmp_path)
    assert smoothing.loss_tag(frame) == "loss/average"
    assert "loss/average" in curves.verdicts(frame)[0].rule


def validation_curve(rising: bool):
    return lambda step: 0.2 - 0.1 * step / N + (0.3 * max(0, step / N - 0.5) if rising else 0)


def test_over_fitting_from_validation(tmp_path):
    table = verdicts_of(tmp_path, rf.still_decreasing(N), validation=validation_curve(True), validate_every=100)
    assert table["Over-fitting"].level == "bad"
    assert table["Over-fitting"].status == "from step 600"
    assert "training loss fell" in table["Over-fitting"].notes


def test_validation_without_over_fitting(tmp_path):
    table = verdicts_of(tmp_path, rf.converging(N), validation=validation_curve(False), validate_every=100)
    assert (table["Over-fitting"].status, table["Over-fitting"].level) == ("not seen", "ok")


def test_epoch_validation_is_placed_by_wall_time(tmp_path):
    run = rf.make_run(tmp_path, loss=rf.still_decreasing(N), steps_per_epoch=100, validation=validation_curve(True))
    frame = read_run_scalars(run)
    steps, values = smoothing.epoch_steps(frame, "loss/validation/epoch_average")
    assert steps.tolist() == list(range(100, N + 1, 100))
    table = {v.metric: v for v in curves.verdicts(frame)}
    assert table["Over-fitting"].status == "from step 600"
    assert "placed at steps by wall time" in table["Over-fitting"].notes


def test_final_loss_is_the_verdicts_number(tmp_path):
    run = rf.make_run(tmp_path, loss=rf.converging(N))
    frame = read_run_scalars(run)
    final = curves.final_loss(frame)
    assert f"{final:.4g}" == next(v.status for v in curves.verdicts(frame) if v.metric == "Final loss")


def test_verdict_frame(tmp_path):
    frame = read_run_scalars(rf.make_run(tmp_path, loss=rf.converging(100)))
    table = curves.verdict_frame(curves.verdicts(frame))
    assert list(table.columns) == ["Metric", "Status", "Notes", "Rule"] and len(table) == len(curves.METRICS)
