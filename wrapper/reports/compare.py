"""Comparisons of several runs: overlaid curves, the parameters that differ, verdicts, sample grids."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from wrapper.curves import verdicts as curves
from wrapper.kohya import samples
from wrapper.recipe.diff import flatten_dict
from wrapper.reports import pages, plots
from wrapper.reports.pages import Cell, Fold, Heading, Image, Para, Table
from wrapper.reports.run import (
    RunView,
    grid_columns,
    load_run,
    point_label,
    prompt_label,
    show_value,
    verdict_table,
)
from wrapper.runs import layout as runs


def differing_parameters(views: Sequence[RunView]) -> list[tuple[str, list[str]]]:
    """(parameter, value per run) for every recipe value that is not the same in all runs."""
    flat = [
        {
            "modifiers": ", ".join(v.meta.get("modifiers") or []) or "(none)",
            **flatten_dict(v.meta.get("recipe") or {}),
        }
        for v in views
    ]
    keys = sorted({k for f in flat for k in f}, key=lambda k: (k != "modifiers", k))
    missing = "(absent)"
    rows = [(k, [show_value(f.get(k, missing)) for f in flat]) for k in keys]
    return [(k, vals) for k, vals in rows if len(set(vals)) > 1]


def load_runs(run_dirs: Sequence[Path | str]) -> list[RunView]:
    """Load runs with distinct labels: the recipe name, plus the run folder where names repeat."""
    paths = [runs.resolve_run_dir(p) for p in run_dirs]
    labels = runs.run_labels(paths, [runs.recipe_name(p) for p in paths])
    return [load_run(p, label) for p, label in zip(paths, labels, strict=True)]


def comparison_blocks(views: Sequence[RunView], thresholds: curves.Thresholds) -> list:
    """The blocks of a comparison of several runs."""
    weight = thresholds.smoothing
    table = {v.label: curves.verdicts(v.scalars, thresholds) for v in views}
    finals = {v.label: curves.final_loss(v.scalars, thresholds) for v in views}
    blocks: list = [
        Heading("Runs"),
        Table(
            ["Run", "Folder", "State", "Last step", "Final loss", "Glitches"],
            [
                [
                    v.label,
                    str(v.path),
                    v.status.get("state", "unknown"),
                    str(v.last_step or "-"),
                    "-" if finals[v.label] is None else f"{finals[v.label]:.4g}",
                    Cell(
                        ", ".join(v.meta.get("glitches") or []) or "none",
                        "bad" if v.meta.get("glitches") else None,
                    ),
                ]
                for v in views
            ],
        ),
    ]
    for v in views:
        blocks += [Para(f"{v.label}: {p}", "warn") for p in v.scalars.attrs.get("problems", [])]
    diff = differing_parameters(views)
    blocks.append(Heading("Parameters that differ"))
    blocks.append(
        Table(["Parameter", *[v.label for v in views]], [[k, *vals] for k, vals in diff])
        if diff
        else Para("None: every recipe value is the same in all runs.")
    )
    frames = {v.label: v.scalars for v in views}
    blocks.append(Heading("Curves"))
    for name, data, alt, caption in [
        (
            "loss.png",
            plots.overlay_plot(frames, weight),
            "Smoothed training loss",
            f"smoothed as TensorBoard does (weight {weight}), aligned by step",
        ),
        (
            "validation.png",
            plots.overlay_plot(frames, weight, validation=True),
            "Validation loss",
            "validation averages by step",
        ),
    ]:
        blocks.append(Image(f"plots/{name}", data, alt, caption) if data else Para(f"{alt}: none logged."))
    metrics = list(curves.METRICS)
    blocks += [
        Heading("Verdicts"),
        Table(
            ["Metric", *table],
            [
                [
                    m,
                    *[next((Cell(r.status, r.level) for r in rows if r.metric == m), "-") for rows in table.values()],
                ]
                for m in metrics
            ],
        ),
    ]
    blocks += [Fold(f"{label}: verdicts with notes and rules", [verdict_table(rows)]) for label, rows in table.items()]
    blocks += [Heading("Samples"), *_compare_samples(views)]
    return blocks


def _compare_samples(views: Sequence[RunView]) -> list:
    cells = [samples.latest_per_cell(v.samples) for v in views]
    prompts = sorted({q for c in cells for _, q in c})
    if not prompts:
        return [Para("No sample images in any run.")]
    blocks: list = []
    texts = next((v.prompts for v in views if v.prompts), [])
    for q in prompts:
        points, note = grid_columns(sorted({p for c in cells for p, qq in c if qq == q}))
        grid = {
            (r, c): cell[(pt, q)].path for r, cell in enumerate(cells) for c, pt in enumerate(points) if (pt, q) in cell
        }
        data, _ = plots.thumbnail_grid([v.label for v in views], [point_label(p) for p in points], grid)
        blocks.append(Heading(prompt_label(texts, q), 3))
        blocks.append(
            Image(
                f"plots/samples-p{q:02d}.jpg",
                data,
                f"Samples for prompt {q}",
                f"rows: runs; columns: sample points{note}",
            )
        )
    return blocks


def write_comparison(
    run_dirs: Sequence[Path | str], out_dir: Path | str, *, thresholds: curves.Thresholds | None = None
) -> list[Path]:
    """Write comparison.html, comparison.md and plots/ into out_dir; return the paths written."""
    return render_comparison(load_runs(run_dirs), out_dir, thresholds)


def render_comparison(
    views: Sequence[RunView], out_dir: Path | str, thresholds: curves.Thresholds | None = None
) -> list[Path]:
    """`write_comparison` for runs already loaded."""
    thresholds = thresholds or curves.Thresholds()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"Comparison of {len(views)} runs"
    return pages.write_document(out, "comparison", title, comparison_blocks(views, thresholds), f"written {stamp}")
