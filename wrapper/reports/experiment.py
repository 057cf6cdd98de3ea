"""The experiment report of a sweep: per variant and metric, the mean over seeds with its 95% interval and
the difference from the baseline with its interval, flagged when it is beyond seed noise.

Written into the sweep folder (report.html, report.md, plots/) next to sweep.json. Each member's own run
report (verdicts, samples) is written where missing or older than the run, and linked.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from wrapper.curves import stats
from wrapper.curves import verdicts as curves
from wrapper.errors import RunError
from wrapper.reports import pages, plots
from wrapper.reports.measures import comparison_metric_blocks
from wrapper.reports.pages import Cell, Fold, Heading, Image, Items, Para, Table
from wrapper.reports.run import REPORT, REPORT_HTML, RunView, load_run, render_report, verdict_table
from wrapper.runs import layout as runs
from wrapper.runs.sweeps import SweepRecord, read_sweep


@dataclass(frozen=True)
class Replicate:
    """One member run of the sweep, loaded, with its curve metrics (None when it did not succeed)."""

    spec: str
    seed: int | None
    view: RunView
    metrics: dict[str, float | None] | None


@dataclass(frozen=True)
class Row:
    """One variant on one metric."""

    variant: str
    values: list[float]
    effect: stats.Effect | None  # None for the baseline itself, or when the baseline has no value


def load_replicates(record: SweepRecord, weight: float) -> list[Replicate]:
    """Every member, in sweep order; only succeeded runs get metrics."""
    out = []
    for member in record.members:
        view = load_run(member.run_dir)
        ok = view.status.get("state") == "succeeded"
        seed = member.seed if member.seed is not None else _recorded_seed(view)
        out.append(Replicate(member.spec, seed, view, stats.curve_metrics(view.scalars, weight) if ok else None))
    return out


def _recorded_seed(view: RunView) -> int | None:
    seed = ((view.meta.get("recipe") or {}).get("training") or {}).get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def baseline_of(record: SweepRecord) -> str:
    """The spec every variant is compared with: the sweep's baseline, else a queue's first spec."""
    return record.baseline or record.members[0].spec


def variants_of(replicates: Sequence[Replicate], baseline: str) -> list[str]:
    specs = list(dict.fromkeys(r.spec for r in replicates))
    return [baseline, *[s for s in specs if s != baseline]] if baseline in specs else specs


def metric_rows(replicates: Sequence[Replicate], metric: str, baseline: str, method: stats.Method) -> list[Row]:
    """Per variant: the values over its succeeded seeds and, against the baseline's, the effect."""
    values = {v: [r.metrics[metric] for r in replicates if r.spec == v and r.metrics and r.metrics[metric] is not None]
              for v in variants_of(replicates, baseline)}
    base = values.get(baseline, [])
    rows = []
    for variant, vals in values.items():
        effect = stats.effect(vals, base, method) if vals and base and variant != baseline else None
        rows.append(Row(variant, vals, effect))
    return rows


def _interval(i: stats.Interval) -> str:
    return f"{i.estimate:.4g}" if i.n < 2 else f"{i.estimate:.4g} [{i.low:.4g}, {i.high:.4g}]"


def _verdict_cell(effect: stats.Effect) -> Cell:
    level = {stats.BEYOND: "bad", stats.WITHIN: "ok"}.get(effect.verdict, "n/a")
    return Cell(effect.verdict, level)


def metric_table(rows: Sequence[Row], baseline: str, method: stats.Method) -> Table:
    body = []
    for row in rows:
        if not row.values:
            body.append([row.variant, "0", "-", "-", Cell("no finished run with this value", "n/a")])
            continue
        mean = _interval(stats.mean_interval(row.values, method))
        if row.variant == baseline:
            body.append([row.variant, str(len(row.values)), mean, "(baseline)", ""])
        elif row.effect is None:
            body.append([row.variant, str(len(row.values)), mean, "-", Cell("no baseline value", "n/a")])
        else:
            diff = _interval(row.effect.difference) if row.effect.difference else "-"
            body.append([row.variant, str(len(row.values)), mean, diff, _verdict_cell(row.effect)])
    return Table(["Variant", "Seeds", "Mean [95% CI]", "Difference from baseline [95% CI]", "Verdict"], body)


def experiment_blocks(record: SweepRecord, replicates: Sequence[Replicate], sweep_dir: Path,
                      thresholds: curves.Thresholds, method: stats.Method) -> tuple[list, list[str]]:
    """The report's blocks, and a line for each effect beyond seed noise."""
    baseline = baseline_of(record)
    variants = variants_of(replicates, baseline)
    seeds = sorted({r.seed for r in replicates if r.seed is not None})
    left_out = [r for r in replicates if r.metrics is None]
    tables, beyond = [], []
    for metric, meaning in stats.CURVE_METRICS.items():
        rows = metric_rows(replicates, metric, baseline, method)
        if any(row.values for row in rows):
            tables += [Heading(meaning, 3), metric_table(rows, baseline, method)]
            beyond += [f"{row.variant}: {meaning}, {_interval(row.effect.difference)}"
                       for row in rows if row.effect and row.effect.verdict == stats.BEYOND]
    blocks: list = [
        Heading("Design"),
        Items([f"baseline: {baseline}", f"variants: {', '.join(v for v in variants if v != baseline) or 'none'}",
               f"seeds: {', '.join(map(str, seeds)) or 'unknown'}",
               f"runs: {len(replicates)} ({record.backend}, {record.parallel} at once)",
               f"method: {stats.describe(method)}; a difference whose interval excludes zero is "
               f"'{stats.BEYOND}'; with a single seed on either side it is '{stats.ONE_SEED}'. Each "
               f"comparison is flagged by chance 5% of the time when there is no effect: with "
               f"{max(len(variants) - 1, 0)} variant(s) x {len(stats.CURVE_METRICS)} metrics, expect some "
               "flags on metrics a variant does not change",
               f"curves smoothed as TensorBoard does (weight {thresholds.smoothing})"]),
    ]
    if left_out:
        blocks.append(Para("left out (not succeeded): " + ", ".join(
            f"{r.spec} seed {r.seed} ({r.view.status.get('state', 'unknown')})" for r in left_out), "warn"))
    blocks += [Heading("Effects beyond seed noise"),
               Items(beyond) if beyond else Para("None: no variant differs from the baseline beyond seed noise on "
                                                 "any metric (or there are too few seeds to tell)."),
               Heading("Metrics over seeds"), *(tables or [Para("No finished run has a loss curve yet.")])]
    blocks += _curve_blocks(replicates, variants, thresholds.smoothing)
    blocks += _member_blocks(replicates, sweep_dir, thresholds)
    problems: list[str] = []
    labels = [f"{r.spec} seed {r.seed}" for r in replicates]
    metric_blocks = comparison_metric_blocks(labels, [r.view.path for r in replicates], problems)
    return [*blocks, Heading("Image metrics"), *metric_blocks, *[Para(p, "warn") for p in problems]], beyond


def _curve_blocks(replicates: Sequence[Replicate], variants: Sequence[str], weight: float) -> list:
    groups = {v: [r.view.scalars for r in replicates if r.spec == v and r.metrics is not None] for v in variants}
    blocks: list = [Heading("Curves")]
    for name, validation, alt in (("loss.png", False, "Smoothed training loss over seeds"),
                                  ("validation.png", True, "Validation loss over seeds")):
        data = plots.seed_band_plot(groups, weight, validation=validation)
        blocks.append(Image(f"plots/{name}", data, alt, "line: mean over seeds; band: lowest to highest seed")
                      if data else Para(f"{alt}: none logged."))
    return blocks


def _member_blocks(replicates: Sequence[Replicate], sweep_dir: Path, thresholds: curves.Thresholds) -> list:
    rows, folds = [], []
    for r in replicates:
        report = r.view.path / REPORT_HTML
        final = r.metrics.get("final_loss") if r.metrics else None
        rows.append([r.spec, str(r.seed), r.view.status.get("state", "unknown"),
                     "-" if final is None else f"{final:.4g}",
                     Cell("run report", href=os.path.relpath(report, sweep_dir)) if report.is_file() else "-",
                     str(r.view.path)])
        folds.append(Fold(f"{r.spec} seed {r.seed}: verdicts",
                          [verdict_table(curves.verdicts(r.view.scalars, thresholds))]))
    return [Heading("Runs"), Table(["Variant", "Seed", "State", "Final smoothed loss", "Report", "Folder"], rows),
            *folds]


def refresh_member_reports(replicates: Sequence[Replicate], thresholds: curves.Thresholds) -> None:
    """Write each ended member's run report where it is missing or older than the run's status."""
    for r in replicates:
        if r.view.status.get("state") in ("queued", "running"):
            continue
        report, status = r.view.path / REPORT_HTML, r.view.path / runs.STATUS
        if not report.is_file() or (status.is_file() and status.stat().st_mtime > report.stat().st_mtime):
            render_report(r.view, thresholds)


@dataclass(frozen=True)
class ExperimentWritten:
    paths: list[Path]
    beyond: list[str]  # each effect beyond seed noise, as a line
    left_out: list[str]  # members that did not succeed


def write_experiment_report(sweep_dir: Path | str, *, thresholds: curves.Thresholds | None = None,
                            method: stats.Method = "t") -> ExperimentWritten:
    """Write report.html, report.md and plots/ into the sweep folder."""
    thresholds = thresholds or curves.Thresholds()
    sweep_dir = Path(sweep_dir)
    record = read_sweep(sweep_dir)
    if not record.members:
        raise RunError(f"{sweep_dir}: the sweep has no members to report on")
    replicates = load_replicates(record, thresholds.smoothing)
    refresh_member_reports(replicates, thresholds)
    blocks, beyond = experiment_blocks(record, replicates, sweep_dir, thresholds, method)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"Experiment: {baseline_of(record)}" + (f" and {len(record.variants)} variant(s)"
                                                    if record.kind == "sweep" else "")
    paths = pages.write_document(sweep_dir, REPORT, title, blocks, f"{sweep_dir.name} · written {stamp}")
    left_out = [f"{r.spec} seed {r.seed}: {r.view.status.get('state', 'unknown')}" for r in replicates
                if r.metrics is None]
    return ExperimentWritten(paths, beyond, left_out)
