"""Verdicts: what a loss curve says, each finding with the rule that produced it.

`verdicts` reads one run's scalars (a `wrapper.curves.tblog` frame), smoothed as TensorBoard
does (`wrapper.curves.smoothing`), and returns the research log's table rows: initial, final and minimum loss,
convergence, plateaus, spikes, non-finite values, oscillation, under- and over-fitting. Every
threshold lives in `Thresholds` and is printed with the finding; nothing is guessed: what the logs
cannot show is reported as not measurable.

The verdicts never contradict each other because they share one notion of "level": the run is cut
into blocks, and two blocks are level when their medians differ by no more than the noise (measured
around the rolling median, so a slope or a spike does not count as noise) or 1% of the loss. A
plateau is a run of blocks all level with each other; Convergence is "converged" exactly when a
plateau reaches the end; Oscillation counts moves between blocks that are not level (a whole-run
plateau has none); Under-fitting is "possible" only for a fall under 5%, within the noise, or a
whole-run plateau, and says "still learning" for a larger fall that Convergence sees continuing.
tests/curves/test_verdict_properties.py checks these pairs on curves of many shapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from wrapper.curves.smoothing import DEFAULT_SMOOTHING, epoch_steps, loss_tag, series, smooth
from wrapper.kohya.logs import KNOWN_TAGS, LOSS_AVERAGE, LOSS_CURRENT, LR_PREFIX, VAL_EPOCH, VAL_STEP

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Level = Literal["ok", "warn", "bad", "info", "n/a"]


@dataclass(frozen=True)
class Thresholds:
    """Every number the verdicts use; each verdict prints the ones it applied."""

    smoothing: float = DEFAULT_SMOOTHING
    edge_fraction: float = 0.05  # initial/final loss: median of the first/last 5% of points
    edge_points: int = 3  # and of at least 3, so that one spike is not the initial or final loss
    blocks: int = 20  # plateaus, convergence and oscillation compare the medians of up to 20 blocks
    block_points: int = 8  # of at least 8 points each
    level_rel: float = 0.01  # two blocks are level when their medians differ by at most 1% of the loss
    level_se: float = 3.0  # ... or by at most 3 combined standard errors of the medians, if more
    plateau_min_blocks: int = 3  # a plateau: >= 3 blocks all level; converged: the last 3 blocks level
    spike_z: float = 10.0  # robust z-score above which a point is a spike (per-batch loss is heavy-tailed)
    spike_window: int = 21  # points in the centred rolling median that spikes and noise are measured from
    noise_points: int = 64  # the noise of a block (or edge) is measured over >= 64 points around it
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
    import pandas as pd

    base = pd.Series(values).rolling(window, center=True, min_periods=1).median().to_numpy()
    resid = values - base
    return resid, _sigma(resid)


def _sigma(resid: np.ndarray) -> float:
    import numpy as np

    return float(1.4826 * np.median(np.abs(resid - np.median(resid)))) if len(resid) else 0.0


@dataclass(frozen=True)
class Block:
    """Consecutive points of a run: index of the first, steps covered, median and its standard error."""

    start: int
    first: int
    last: int
    median: float
    se: float


def _median_se(resid: np.ndarray, a: int, b: int, t: Thresholds) -> float:
    """Standard error of the median of points a..b-1; their noise is measured over >= t.noise_points around them."""
    width = min(len(resid), max(b - a, t.noise_points))
    lo = max(0, min((a + b - width) // 2, len(resid) - width))
    return 1.2533 * _sigma(resid[lo : lo + width]) / math.sqrt(b - a)


def _blocks(s: np.ndarray, v: np.ndarray, resid: np.ndarray, t: Thresholds) -> list[Block]:
    """Up to `t.blocks` consecutive blocks of at least `t.block_points` points each.

    A block's standard error comes from the residuals around the rolling median, not from its spread:
    a falling block is not noisier than a flat one, and a spike does not widen it.
    """
    import numpy as np

    count = min(t.blocks, len(v) // t.block_points)
    bounds = np.linspace(0, len(v), count + 1).round().astype(int).tolist() if count else []
    return [
        Block(a, int(s[a]), int(s[b - 1]), float(np.median(v[a:b])), _median_se(resid, a, b, t))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _level(a: Block, b: Block, t: Thresholds) -> bool:
    """Whether two blocks' medians differ by no more than the noise and the relative tolerance allow."""
    tolerance = max(t.level_rel * min(abs(a.median), abs(b.median)), t.level_se * math.hypot(a.se, b.se))
    return abs(a.median - b.median) <= tolerance


def _all_level(blocks: Sequence[Block], t: Thresholds) -> bool:
    return all(_level(a, b, t) for i, a in enumerate(blocks) for b in blocks[i + 1 :])


def _moves(blocks: list[Block], t: Thresholds) -> list[int]:
    """Per block transition: 0 when level, else the sign of the move."""
    return [
        0 if _level(a, b, t) else (1 if b.median > a.median else -1) for a, b in zip(blocks, blocks[1:], strict=False)
    ]


def _plateau_spans(blocks: list[Block], t: Thresholds) -> list[tuple[int, int]]:
    """(first, last) block of each plateau: >= plateau_min_blocks blocks, every pair level.

    Found from the end backwards, so the span that reaches the end is the longest one that does:
    a plateau reaches the end exactly when the last plateau_min_blocks blocks are level, which is
    the convergence rule.
    """
    spans, end = [], len(blocks) - 1
    while end >= 0:
        start = end
        while start > 0 and all(_level(blocks[start - 1], b, t) for b in blocks[start : end + 1]):
            start -= 1
        if end - start + 1 >= t.plateau_min_blocks:
            spans.append((start, end))
            end = start - 1
        else:
            end -= 1
    return spans[::-1]


def _level_rule(t: Thresholds) -> str:
    return (
        f"up to {t.blocks} consecutive blocks of >= {t.block_points} points; two blocks are level when their "
        f"medians differ by at most max({t.level_rel:.0%} of the lower, {t.level_se:g} combined standard errors; "
        f"SE = 1.2533 x 1.4826 x MAD of the residuals from a {t.spike_window}-point rolling median, over "
        f">= {t.noise_points} points around the block, / sqrt(points))"
    )


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
    """Median of the first and of the last `edge_fraction` (>= `edge_points`) of finite points, and that count."""
    import numpy as np

    edge = min(len(v), max(t.edge_points, math.ceil(t.edge_fraction * len(v))))
    return float(np.median(v[:edge])), float(np.median(v[-edge:])), edge


def loss_missing(frame: pd.DataFrame) -> str | None:
    """Why a frame has no training loss: the tags it holds instead and the ones sd-scripts writes; else None."""
    if loss_tag(frame):
        return None
    why = f"no {LOSS_CURRENT} or {LOSS_AVERAGE} in the logs"
    found = sorted(str(tag) for tag in frame["tag"].unique()) if len(frame) else []
    if not found:
        return why
    shown = ", ".join(tag if tag.isprintable() else repr(tag) for tag in found[:8])
    more = f" and {len(found) - 8} more" if len(found) > 8 else ""
    return (
        f"{why}; they hold {len(found)} other tag{'s' * (len(found) > 1)}: {shown}{more} "
        f"(sd-scripts writes {', '.join(KNOWN_TAGS)} and {LR_PREFIX}<group>)"
    )


def verdicts(frame: pd.DataFrame, t: Thresholds | None = None) -> list[Verdict]:
    """The verdict table of one run's scalars (a `wrapper.tblog` frame), one row per `METRICS`."""
    import numpy as np

    t = t or Thresholds()
    tag = loss_tag(frame)
    steps, raw = series(frame, tag) if tag else (np.zeros(0, np.int64), np.zeros(0))
    finite = np.isfinite(raw)
    s, v = steps[finite], raw[finite]
    if len(v) == 0:
        why = f"{tag} has no finite value" if tag else str(loss_missing(frame))
        rows = {m: Verdict(m, "no data", "n/a", why, "") for m in METRICS}
        if tag:
            rows["NaN / inf"] = _nonfinite(tag, steps, raw)
        rows["Over-fitting"] = _overfitting(frame, tag, t)
        return list(rows.values())
    smoothed = smooth(v, t.smoothing)
    first, last, edge = _edges(v, t)
    edge_rule = (
        f"median of raw {tag} over the first/last {t.edge_fraction:.0%} of finite points, at least "
        f"{t.edge_points} ({edge})"
    )
    low = int(np.argmin(smoothed))
    resid, _ = _noise(v, t.spike_window)
    blocks = _blocks(s, v, resid, t)
    spans = _plateau_spans(blocks, t)
    convergence = _convergence(s, v, blocks, t)
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
        _plateaus(blocks, spans, t),
        _spikes(s, resid, t),
        _nonfinite(tag, steps, raw),
        _oscillation(blocks, t),
        _underfitting(first, last, _fall_noise(resid, edge, t), convergence, spans == [(0, len(blocks) - 1)], t),
        _overfitting(frame, tag, t),
    ]


def _convergence(s: np.ndarray, v: np.ndarray, blocks: list[Block], t: Thresholds) -> Verdict:
    import numpy as np

    k = t.plateau_min_blocks
    rule = (
        f"converged when the last {k} blocks are all level (the plateau rule: {_level_rule(t)}); "
        "otherwise still decreasing or rising by the least-squares trend of their points"
    )
    if len(blocks) < k:
        return Verdict(
            "Convergence", "too short", "n/a", f"{len(v)} finite points: {len(blocks)} blocks; need {k}", rule
        )
    tail = blocks[-k:]
    medians = ", ".join(_fmt(b.median) for b in tail)
    notes = f"block medians {medians} over steps {tail[0].first}-{tail[-1].last}"
    if _all_level(tail, t):
        return Verdict("Convergence", "converged", "ok", notes + "; all level", rule)
    ts, tv = s[tail[0].start :].astype(float), v[tail[0].start :]
    slope = float(np.polyfit(ts, tv, 1)[0]) if ts[-1] > ts[0] else tail[-1].median - tail[0].median
    notes += f"; trend {_fmt(slope * (ts[-1] - ts[0]))} over them"
    if slope < 0:
        return Verdict("Convergence", "still decreasing", "warn", notes, rule)
    return Verdict("Convergence", "rising", "bad", notes, rule)


def _plateaus(blocks: list[Block], spans: list[tuple[int, int]], t: Thresholds) -> Verdict:
    rule = (
        f"a plateau is >= {t.plateau_min_blocks} consecutive blocks that are all level with each other; "
        + _level_rule(t)
    )
    if len(blocks) < t.plateau_min_blocks:
        return Verdict("Plateaus", "too short", "n/a", f"{len(blocks)} blocks", rule)
    if not spans:
        return Verdict("Plateaus", "none", "info", f"no {t.plateau_min_blocks} consecutive blocks are level", rule)
    texts = []
    for a, b in spans:
        where = " (whole run)" if a == 0 and b == len(blocks) - 1 else " (to the end)" if b == len(blocks) - 1 else ""
        texts.append(f"steps {blocks[a].first}-{blocks[b].last}{where}")
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


def _oscillation(blocks: list[Block], t: Thresholds) -> Verdict:
    rule = (
        f"consecutive blocks that are not level (as for plateaus) give a move up or down; oscillating when the "
        f"moves reverse direction >= {t.oscillation_reversals} times"
    )
    if len(blocks) < t.plateau_min_blocks:
        return Verdict("Oscillation", "too short", "n/a", f"{len(blocks)} blocks", rule)
    signs = [m for m in _moves(blocks, t) if m]
    reversals = sum(a != b for a, b in zip(signs, signs[1:], strict=False))
    notes = f"{reversals} reversals among {len(signs)} moves between {len(blocks)} blocks"
    if reversals >= t.oscillation_reversals:
        return Verdict("Oscillation", "oscillating", "warn", notes, rule)
    return Verdict("Oscillation", "none", "ok", notes, rule)


def _fall_noise(resid: np.ndarray, edge: int, t: Thresholds) -> float:
    """The least fall from initial to final loss that is not noise: level_se combined SEs of the edge medians."""
    n = len(resid)
    return t.level_se * math.hypot(_median_se(resid, 0, edge, t), _median_se(resid, n - edge, n, t))


def _underfitting(first: float, last: float, noise: float, convergence: Verdict, flat: bool, t: Thresholds) -> Verdict:
    rule = (
        f"possible when the loss fell (initial - final) by less than {t.underfit_drop:.0%} of the initial loss or "
        f"by less than {t.level_se:g} combined standard errors of the two (SE as for plateaus), or the whole run is "
        "one plateau; still learning when it fell more but Convergence says still decreasing"
    )
    drop = (first - last) / abs(first) if first else math.nan
    if math.isnan(drop):
        return Verdict("Under-fitting", "not measurable", "n/a", "initial loss is 0", rule)
    notes = f"loss fell {drop:.1%} from initial to final" if drop >= 0 else f"loss rose {-drop:.1%}"
    if convergence.status == "too short":
        return Verdict("Under-fitting", "too short", "n/a", f"{notes}; too few points (see Convergence)", rule)
    if drop < t.underfit_drop:
        return Verdict("Under-fitting", "possible", "warn", notes, rule)
    if first - last < noise:
        return Verdict("Under-fitting", "possible", "warn", f"{notes}, within the noise ({_fmt(noise)})", rule)
    if flat:
        return Verdict(
            "Under-fitting", "possible", "warn", notes + ", within the noise: the whole run is one plateau", rule
        )
    if convergence.status == "still decreasing":
        return Verdict("Under-fitting", "still learning", "warn", notes + "; still decreasing at the end", rule)
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
