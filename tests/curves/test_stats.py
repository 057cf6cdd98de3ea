"""Effects with intervals on known answers: a planted effect is found, a planted null is not, and the
interval covers the truth at about the stated rate over many simulated sweeps."""

from __future__ import annotations

import numpy as np
import pytest
import runfactory as rf

from wrapper.curves import stats
from wrapper.runs.layout import read_run_scalars


@pytest.mark.parametrize("method", ["t", "bootstrap"])
def test_a_planted_effect_is_beyond_seed_noise_and_a_null_is_not(method):
    rng = np.random.default_rng(0)
    baseline = rng.normal(0.10, 0.005, 8)
    shifted = rng.normal(0.13, 0.005, 8)
    same = rng.normal(0.10, 0.005, 8)
    found = stats.effect(shifted, baseline, method)
    assert found.verdict == stats.BEYOND and found.difference.low > 0
    assert found.difference.estimate == pytest.approx(shifted.mean() - baseline.mean())
    null = stats.effect(same, baseline, method)
    assert null.verdict == stats.WITHIN and null.difference.low < 0 < null.difference.high


def test_one_seed_cannot_be_told_from_noise():
    result = stats.effect([0.2], [0.1, 0.11, 0.09])
    assert result.verdict == stats.ONE_SEED and result.difference is None and result.variant.n == 1


def test_welch_interval_matches_scipys_t_test():
    from scipy import stats as scipy_stats

    a, b = [0.31, 0.29, 0.35, 0.30], [0.20, 0.26, 0.22]
    interval = stats.difference_interval(a, b, "t")
    ci = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (interval.low, interval.high) == pytest.approx((ci.low, ci.high))


@pytest.mark.parametrize(("method", "trials"), [("t", 2000), ("bootstrap", 150)])
def test_intervals_cover_the_truth_at_about_the_stated_rate(method, trials):
    """Simulated sweeps of 3 seeds per side with a true difference of 0.02: the 95% interval of the
    difference covers 0.02 in about 95% of them (the bootstrap, a percentile method at n=3, less)."""
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(trials):
        a, b = rng.normal(0.12, 0.01, 3), rng.normal(0.10, 0.01, 3)
        interval = stats.difference_interval(a, b, method)
        covered += interval.low <= 0.02 <= interval.high
    rate = covered / trials
    if method == "t":
        assert 0.93 <= rate <= 0.97
    else:
        assert 0.70 <= rate <= 0.97  # the percentile bootstrap is known to under-cover with 3 seeds


def test_curve_metrics_of_a_run(tmp_path):
    run = rf.make_run(tmp_path, loss=rf.converging(600), validation=lambda s: 0.2 - s / 6000, validate_every=50)
    got = stats.curve_metrics(read_run_scalars(run))
    assert 0.09 < got["final_loss"] < 0.12 and got["min_loss"] <= got["final_loss"]
    assert got["final_loss"] < got["loss_auc"] < 0.3
    # decoded from float32 running averages: exact to float32 precision times the number of passes
    assert got["final_val_loss"] == pytest.approx(0.1, rel=1e-5) and got["min_val_loss"] == pytest.approx(0.1, rel=1e-5)
    assert 50 < got["steps_to_plateau"] < 600
    empty = stats.curve_metrics(read_run_scalars(tmp_path / "nothing-here"))
    assert set(empty.values()) == {None}
