"""Effects with uncertainty: is a variant's number different from the baseline's beyond seed noise?

Each run gives one value per curve metric (final smoothed loss, area under the curve, ...). Over the
seeds of a variant we report the mean with a 95% interval, and the difference from the baseline's mean
with its interval: Welch's t interval (unequal variances), or a percentile bootstrap of the difference
of means (scipy.stats.bootstrap, 9,999 resamples, seeded). An interval that excludes zero is flagged
"beyond seed noise"; a variant or baseline with a single seed "cannot be told from noise".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from wrapper.curves.smoothing import DEFAULT_SMOOTHING, loss_tag, series, smooth

if TYPE_CHECKING:
    import pandas as pd

Method = Literal["t", "bootstrap"]
CONFIDENCE = 0.95
RESAMPLES = 9999
ONE_SEED = "one seed: cannot be told from noise"
BEYOND = "beyond seed noise"
WITHIN = "within seed noise"


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Effect:
    """A variant against the baseline on one metric."""

    variant: Interval
    baseline: Interval
    difference: Interval | None  # None when either side has a single seed
    verdict: str


def describe(method: Method) -> str:
    """The method as the reports state it."""
    if method == "t":
        return (f"{CONFIDENCE:.0%} intervals: Student's t for a mean over seeds, Welch's t (unequal variances) "
                "for a difference of means")
    return (f"{CONFIDENCE:.0%} intervals: percentile bootstrap ({RESAMPLES} resamples, seeded) of the mean, "
            "and of the difference of means; with few seeds its intervals are too narrow (3 seeds a side: "
            "about 83% of intervals cover the truth, Welch's t 96%)")


def mean_interval(values: Sequence[float], method: Method = "t") -> Interval:
    """The mean over seeds with its interval (a single value gives an interval of zero width... and n=1)."""
    import numpy as np
    from scipy import stats

    x = np.asarray(values, float)
    n, mean = len(x), float(x.mean())
    if n < 2:
        return Interval(mean, mean, mean, n)
    if method == "bootstrap" and np.ptp(x) > 0:
        ci = stats.bootstrap((x,), np.mean, confidence_level=CONFIDENCE, n_resamples=RESAMPLES,
                             method="percentile", random_state=0).confidence_interval
        return Interval(mean, float(ci.low), float(ci.high), n)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


def difference_interval(variant: Sequence[float], baseline: Sequence[float], method: Method = "t") -> Interval:
    """mean(variant) - mean(baseline) with its interval (both need two or more seeds)."""
    import numpy as np
    from scipy import stats

    a, b = np.asarray(variant, float), np.asarray(baseline, float)
    diff = float(a.mean() - b.mean())
    if method == "bootstrap":
        if np.ptp(a) == 0 and np.ptp(b) == 0:
            return Interval(diff, diff, diff, min(len(a), len(b)))
        ci = stats.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis),
                             confidence_level=CONFIDENCE, n_resamples=RESAMPLES, method="percentile",
                             random_state=0).confidence_interval
        return Interval(diff, float(ci.low), float(ci.high), min(len(a), len(b)))
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(diff, diff, diff, min(len(a), len(b)))
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * se)
    return Interval(diff, diff - half, diff + half, min(len(a), len(b)))


def effect(variant: Sequence[float], baseline: Sequence[float], method: Method = "t") -> Effect:
    """The variant's and baseline's means, their difference, and whether it is beyond seed noise."""
    v, b = mean_interval(variant, method), mean_interval(baseline, method)
    if min(len(variant), len(baseline)) < 2:
        return Effect(v, b, None, ONE_SEED)
    d = difference_interval(variant, baseline, method)
    return Effect(v, b, d, BEYOND if d.excludes_zero else WITHIN)


# ---- one number per run, from its scalars --------------------------------------------------------


def curve_metrics(frame: pd.DataFrame, weight: float = DEFAULT_SMOOTHING, *, flat_share: float = 0.01
                  ) -> dict[str, float | None]:
    """The numbers compared across seeds: final and minimum smoothed loss, area under the smoothed curve
    (mean height over the steps trained), final and minimum validation loss, and the step after which
    the smoothed loss never again falls by more than `flat_share` of its total fall."""
    import numpy as np

    from wrapper.kohya.logs import VAL_STEP

    out: dict[str, float | None] = dict.fromkeys(
        ("final_loss", "min_loss", "loss_auc", "final_val_loss", "min_val_loss", "steps_to_plateau"))
    tag = loss_tag(frame)
    if tag is not None:
        steps, values = series(frame, tag)
        keep = np.isfinite(values)
        steps, values = steps[keep], smooth(values[keep], weight)
        if len(values):
            out["final_loss"], out["min_loss"] = float(values[-1]), float(values.min())
            span = float(steps[-1] - steps[0])
            out["loss_auc"] = float(np.trapezoid(values, steps) / span) if span > 0 else float(values[0])
            out["steps_to_plateau"] = float(_plateau_step(steps, values, flat_share))
    steps, values = series(frame, VAL_STEP)
    values = values[np.isfinite(values)]
    if len(values):
        out["final_val_loss"], out["min_val_loss"] = float(values[-1]), float(values.min())
    return out


def _plateau_step(steps, values, flat_share: float) -> int:
    """The first step from which the remaining fall (value minus the later minimum) stays within the share."""
    import numpy as np

    fall = float(values[0] - values.min())
    if fall <= 0:
        return int(steps[0])
    later_min = np.minimum.accumulate(values[::-1])[::-1]
    remaining = values - later_min
    settled = np.nonzero(remaining <= flat_share * fall)[0]
    return int(steps[settled[0]]) if len(settled) else int(steps[-1])


CURVE_METRICS = {
    "final_loss": "final smoothed training loss",
    "min_loss": "minimum smoothed training loss",
    "loss_auc": "area under the smoothed loss curve (mean height over the steps)",
    "final_val_loss": "final validation loss",
    "min_val_loss": "minimum validation loss",
    "steps_to_plateau": "step after which the smoothed loss stops falling (within 1% of its total fall)",
}
