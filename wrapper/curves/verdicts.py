"""Verdicts: what a loss curve says, each finding with the rule that produced it.

`verdicts` reads one run's scalars (a `wrapper.curves.tblog` frame), smoothed as TensorBoard
does (`wrapper.curves.smoothing`), and returns the research log's table rows: initial, final and minimum loss,
convergence, plateaus, spikes, non-finite values, oscillation, under- and over-fitting. Every
threshold lives in `Thresholds` and is printed with the finding; nothing is guessed: what the logs
cannot show is reported as not measurable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from wrapper.curves.smoothing import DEFAULT_SMOOTHING, epoch_steps, loss_tag, series, smooth
from wrapper.kohya.logs import VAL_EPOCH, VAL_STEP

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Level = Literal["ok", "warn", "bad", "info", "n/a"]


@dataclass(frozen=True)
class Thresholds:
    """Every number the verdicts use; each verdict prints the ones it applied."""

    smoothing: float = DEFAULT_SMOOTHING
    edge_fraction: float = 0.05  # initial/final loss: median of the first/last 5% of points
    tail_fraction: float = 0.2  # convergence: trend over the last 20% of points
    converged_noise: float = 0.5  # converged when the tail trend is within 0.5 noise sigma
    blocks: int = 20  # plateaus and oscillation compare the means of 20 consecutive blocks
    plateau_rel: float = 0.01  # a block-to-block move under 1% of the loss (or 3 SE) is flat
    plateau_min_blocks: int = 3
    spike_z: float = 10.0  # robust z-score above which a point is a spike (per-batch loss is heavy-tailed)
    spike_window: int = 21  # points in the centred rolling median that spikes are measured from
    oscillation_reversals: int = 3
    underfit_drop: float = 0.05  # a loss that fell by less than 5% has barely learnt
    overfit_rise: float = 0.05  # validation loss ending 5% above its minimum


@dataclass(frozen=True)
class Verdict:
    """One row of the verdict table."""

    metric: str
    status: str
    level: Level
    notes: str
    rule: str


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4g}"


def _noise(values: np.ndarray, window: int) -> tuple[np.ndarray, float]:
    """Residuals from a centred rolling median, and their robust sigma (1.4826 x MAD)."""
    import numpy as np
    import pandas as pd

    base = pd.Series(values).rolling(window, center=True, min_periods=1).median().to_numpy()
    resid = values - base
    mad = np.median(np.abs(resid - np.median(resid)))
    return resid, float(1.4826 * mad)


def _blocks(steps: np.ndarray, values: np.ndarray, count: int) -> list[tuple[int, int, float, float]]:
    """(first step, last step, mean, standard error) of `count` consecutive equal-size blocks."""
    import numpy as np

    out = []
    for part_s, part_v in zip(np.array_split(steps, count), np.array_split(values, count), strict=True):
        if len(part_v):
            se = float(np.std(part_v, ddof=1) / math.sqrt(len(part_v))) if len(part_v) > 1 else math.inf
            out.append((int(part_s[0]), int(part_s[-1]), float(np.mean(part_v)), se))
    return out


def _moves(blocks: list[tuple[int, int, float, float]], rel: float) -> list[int]:
    """Per block transition: 0 when flat, else the sign of the move."""
    moves = []
    for (_, _, m0, se0), (_, _, m1, se1) in zip(blocks, blocks[1:], strict=False):
        tolerance = max(rel * abs(m0), 3 * math.hypot(se0, se1))
        moves.append(0 if abs(m1 - m0) < tolerance else (1 if m1 > m0 else -1))
    return moves


METRICS = (
    "Initial loss",
    "Final loss",
    "Minimum loss",
    "Convergence",
    "Plateaus",
    "Spikes",
    "NaN / inf",
    "Oscillation",
    "Under-fitting",
    "Over-fitting",
)


def _edges(v: np.ndarray, t: Thresholds) -> tuple[float, float, int]:
    """Median of the first and of the last `edge_fraction` of finite points, and that point count."""
    import numpy as np

    edge = max(1, math.ceil(t.edge_fraction * len(v)))
    return float(np.median(v[:edge])), float(np.median(v[-edge:])), edge


def verdicts(frame: pd.DataFrame, t: Thresholds | None = None) -> list[Verdict]:
    """The verdict table of one run's scalars (a `wrapper.tblog` frame), one row per `METRICS`."""
    import numpy as np

    t = t or Thresholds()
    tag = loss_tag(frame)
    steps, raw = series(frame, tag) if tag else (np.zeros(0, np.int64), np.zeros(0))
    finite = np.isfinite(raw)
    s, v = steps[finite], raw[finite]
    if len(v) == 0:
        why = f"{tag} has no finite value" if tag else "no loss/current or loss/average in the logs"
        rows = {m: Verdict(m, "no data", "n/a", why, "") for m in METRICS}
        if tag:
            rows["NaN / inf"] = _nonfinite(tag, steps, raw)
        rows["Over-fitting"] = _overfitting(frame, tag, t)
        return list(rows.values())
    smoothed = smooth(v, t.smoothing)
    first, last, edge = _edges(v, t)
    edge_rule = f"median of raw {tag} over the first/last {t.edge_fraction:.0%} of finite points ({edge})"
    low = int(np.argmin(smoothed))
    resid, _ = _noise(v, t.spike_window)
    blocks = _blocks(s, v, min(t.blocks, len(v) // 2)) if len(v) >= 4 else []
    moves = _moves(blocks, t.plateau_rel)
    convergence = _convergence(s, v, t)
    return [
        Verdict(
            "Initial loss",
            _fmt(first),
            "info",
            f"steps {s[0]}-{s[edge - 1]}; first point {_fmt(v[0])}",
            edge_rule,
        ),
        Verdict(
            "Final loss",
            _fmt(last),
            "info",
            f"steps {s[-edge]}-{s[-1]}; smoothed at the end {_fmt(smoothed[-1])}",
            edge_rule,
        ),
        Verdict(
            "Minimum loss",
            _fmt(smoothed[low]),
            "info",
            f"smoothed minimum at step {s[low]}; raw minimum {_fmt(v.min())} at step {s[np.argmin(v)]}",
            f"minimum of {tag} smoothed as TensorBoard does (weight {t.smoothing})",
        ),
        convergence,
        _plateaus(blocks, moves, t),
        _spikes(s, resid, t),
        _nonfinite(tag, steps, raw),
        _oscillation(blocks, moves, t),
        _underfitting(first, last, convergence, t, len(v)),
        _overfitting(frame, tag, t),
    ]


def _convergence(s: np.ndarray, v: np.ndarray, t: Thresholds) -> Verdict:
    import numpy as np

    n = max(2, math.ceil(t.tail_fraction * len(v)))
    rule = (
        f"least-squares trend of the raw loss over the last {t.tail_fraction:.0%} of points; "
        f"converged when |trend x span| <= {t.converged_noise} x noise sigma "
        f"(1.4826 x MAD of residuals from a {t.spike_window}-point rolling median)"
    )
    if len(v) < 10:
        return Verdict("Convergence", "too short", "n/a", f"{len(v)} finite points; need 10", rule)
    ts, tv = s[-n:].astype(float), v[-n:]
    slope = float(np.polyfit(ts, tv, 1)[0]) if ts[-1] > ts[0] else 0.0
    change = slope * (ts[-1] - ts[0])
    sigma = _noise(tv, t.spike_window)[1] or float(np.std(tv))
    limit = max(t.converged_noise * sigma, 1e-9 * float(np.abs(tv).max()))  # float error on a flat tail
    notes = f"trend {_fmt(change)} over steps {int(ts[0])}-{int(ts[-1])}; noise sigma {_fmt(sigma)}"
    if abs(change) <= limit:
        return Verdict("Convergence", "converged", "ok", notes, rule)
    if change < 0:
        return Verdict("Convergence", "still decreasing", "warn", notes, rule)
    return Verdict("Convergence", "rising", "bad", notes, rule)


def _plateaus(blocks: list, moves: list[int], t: Thresholds) -> Verdict:
    rule = (
        f"run cut into {t.blocks} blocks of equal point count; a plateau is >= {t.plateau_min_blocks} "
        f"consecutive blocks whose means differ by less than max({t.plateau_rel:.0%} of the loss, "
        "3 standard errors)"
    )
    if len(blocks) < t.plateau_min_blocks:
        return Verdict("Plateaus", "too short", "n/a", f"{len(blocks)} blocks", rule)
    spans, start = [], None
    for i, move in enumerate([*moves, 1]):
        if move == 0 and start is None:
            start = i
        elif move != 0 and start is not None:
            if i - start + 1 >= t.plateau_min_blocks:
                spans.append((start, i))
            start = None
    if not spans:
        return Verdict("Plateaus", "none", "info", "the loss moves between every pair of blocks", rule)
    texts = []
    for a, b in spans:
        where = " (whole run)" if a == 0 and b == len(blocks) - 1 else " (to the end)" if b == len(blocks) - 1 else ""
        texts.append(f"steps {blocks[a][0]}-{blocks[b][1]}{where}")
    return Verdict("Plateaus", f"{len(spans)} plateau{'s' * (len(spans) > 1)}", "info", "; ".join(texts), rule)


def _spikes(s: np.ndarray, resid: np.ndarray, t: Thresholds) -> Verdict:
    import numpy as np

    rule = (
        f"robust z-score (median/MAD) of residuals from a centred {t.spike_window}-point rolling "
        f"median above {t.spike_z}"
    )
    mad = float(np.median(np.abs(resid - np.median(resid))))
    if len(resid) < t.spike_window or mad == 0:
        return Verdict(
            "Spikes",
            "not measurable",
            "n/a",
            "too few points" if len(resid) < t.spike_window else "residuals have no spread",
            rule,
        )
    z = (resid - np.median(resid)) / (1.4826 * mad)
    hits = np.flatnonzero(z > t.spike_z)
    if not len(hits):
        return Verdict("Spikes", "none", "ok", f"largest z {_fmt(float(z.max()))}", rule)
    worst = hits[np.argsort(z[hits])[::-1][:5]]
    listed = ", ".join(f"{s[i]} (z {z[i]:.0f})" for i in worst)
    share = len(hits) / len(resid)
    return Verdict(
        "Spikes",
        f"{len(hits)} spike{'s' * (len(hits) > 1)}",
        "warn",
        f"{share:.2%} of points; largest at steps {listed}",
        rule,
    )


def _nonfinite(tag: str, steps: np.ndarray, raw: np.ndarray) -> Verdict:
    import numpy as np

    bad = np.flatnonzero(~np.isfinite(raw))
    rule = f"count of NaN and infinite values of {tag}"
    if not len(bad):
        return Verdict("NaN / inf", "none", "ok", f"all {len(raw)} points finite", rule)
    kinds = f"{int(np.isnan(raw).sum())} NaN, {int(np.isinf(raw).sum())} inf"
    return Verdict("NaN / inf", f"{len(bad)} points", "bad", f"{kinds}; first at step {steps[bad[0]]}", rule)


def _oscillation(blocks: list, moves: list[int], t: Thresholds) -> Verdict:
    rule = (
        f"block means (as for plateaus) that move beyond the flat tolerance and reverse direction "
        f">= {t.oscillation_reversals} times"
    )
    if len(blocks) < 3:
        return Verdict("Oscillation", "too short", "n/a", f"{len(blocks)} blocks", rule)
    signs = [m for m in moves if m]
    reversals = sum(a != b for a, b in zip(signs, signs[1:], strict=False))
    notes = f"{reversals} reversals among {len(signs)} significant block moves"
    if reversals >= t.oscillation_reversals:
        return Verdict("Oscillation", "oscillating", "warn", notes, rule)
    return Verdict("Oscillation", "none", "ok", notes, rule)


def _underfitting(first: float, last: float, convergence: Verdict, t: Thresholds, points: int) -> Verdict:
    rule = (
        f"relative drop (initial - final) / initial below {t.underfit_drop:.0%}, "
        "or the loss still decreasing at the end"
    )
    drop = (first - last) / abs(first) if first else math.nan
    notes = f"loss fell {drop:.1%} from initial to final" if drop >= 0 else f"loss rose {-drop:.1%}"
    if math.isnan(drop):
        return Verdict("Under-fitting", "not measurable", "n/a", "initial loss is 0", rule)
    if points < 10:
        return Verdict("Under-fitting", "too short", "n/a", f"{notes}; {points} finite points; need 10", rule)
    if drop < t.underfit_drop:
        return Verdict("Under-fitting", "possible", "warn", notes, rule)
    if convergence.status == "still decreasing":
        return Verdict("Under-fitting", "possible", "warn", notes + "; still decreasing at the end", rule)
    return Verdict("Under-fitting", "not seen", "ok", notes, rule)


def _overfitting(frame: pd.DataFrame, tag: str | None, t: Thresholds) -> Verdict:
    import numpy as np

    rule = (
        f"validation loss ending more than {t.overfit_rise:.0%} above its minimum while the "
        "smoothed training loss is lower than at that minimum"
    )
    present = set(frame["tag"].unique()) if len(frame) else set()
    if VAL_STEP in present:
        vs, vv = series(frame, VAL_STEP)
        source = VAL_STEP
    elif VAL_EPOCH in present:
        vs, vv = epoch_steps(frame, VAL_EPOCH)
        source = f"{VAL_EPOCH} (placed at steps by wall time)"
    else:
        return Verdict("Over-fitting", "not measurable", "n/a", "not measurable without a validation split", rule)
    keep = np.isfinite(vv)
    vs, vv = vs[keep], vv[keep]
    if len(vv) < 3:
        return Verdict("Over-fitting", "too few points", "n/a", f"{len(vv)} finite points of {source}", rule)
    low = int(np.argmin(vv))
    rise = (vv[-1] - vv[low]) / abs(vv[low]) if vv[low] else math.inf
    notes = f"{source}: minimum {_fmt(vv[low])} at step {vs[low]}, last {_fmt(vv[-1])} ({rise:+.1%})"
    if rise <= t.overfit_rise:
        return Verdict("Over-fitting", "not seen", "ok", notes, rule)
    if tag is None:
        return Verdict("Over-fitting", "validation rising", "warn", notes + "; no training loss to compare", rule)
    ts, tv = series(frame, tag)
    ok = np.isfinite(tv)
    ts, sm = ts[ok], smooth(tv[ok], t.smoothing)
    at_min = sm[max(0, int(np.searchsorted(ts, vs[low], side="right")) - 1)] if len(sm) else math.nan
    if len(sm) and sm[-1] < at_min:
        notes += f"; training loss fell from {_fmt(at_min)} to {_fmt(sm[-1])}"
        return Verdict("Over-fitting", f"from step {vs[low]}", "bad", notes, rule)
    return Verdict("Over-fitting", "validation rising", "warn", notes + "; training loss did not fall meanwhile", rule)


def final_loss(frame: pd.DataFrame, t: Thresholds | None = None) -> float | None:
    """The final loss as the verdict table states it (median of the last 5% of points), or None."""
    import numpy as np

    tag = loss_tag(frame)
    if tag is None:
        return None
    values = series(frame, tag)[1]
    values = values[np.isfinite(values)]
    return _edges(values, t or Thresholds())[1] if len(values) else None


def verdict_frame(rows: Sequence[Verdict]) -> pd.DataFrame:
    """The verdict table as a DataFrame (Metric, Status, Notes, Rule)."""
    import pandas as pd

    return pd.DataFrame(
        [(v.metric, v.status, v.notes, v.rule) for v in rows], columns=["Metric", "Status", "Notes", "Rule"]
    )
