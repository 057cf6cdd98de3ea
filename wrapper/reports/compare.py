"""Comparisons of several runs: overlaid curves, the parameters that differ, verdicts, sample grids.

A comparison is written into a folder of its own (comparisons/<UTC time>-<id> by default): never into
a run folder, never over a folder that holds anything else, and over an earlier comparison only when
asked to replace it (then only its own files are replaced).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from wrapper.curves import verdicts as curves
from wrapper.errors import RunError
from wrapper.kohya import samples
from wrapper.recipe.diff import flatten_dict
from wrapper.reports import pages, plots
from wrapper.reports.measures import comparison_metric_blocks
from wrapper.reports.pages import Cell, Fold, Heading, Image, Para, Table
from wrapper.reports.run import (
    RunView,
    grid_columns,
    load_run,
    point_label,
    prompt_label,
    read_meta,
    run_folder,
    show_value,
    unreadable_sample,
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
    paths = [run_folder(p) for p in run_dirs]
    seen: dict[Path, str] = {}
    for given, path in zip(run_dirs, paths, strict=True):
        if path.resolve() in seen:
            raise RunError(f"{given} and {seen[path.resolve()]} are the same run ({path}); name each run once")
        seen[path.resolve()] = str(given)
    names = [str(read_meta(p, []).get("name") or p.parent.name) for p in paths]
    return [load_run(p, label) for p, label in zip(paths, _unique_labels(runs.run_labels(paths, names)), strict=True)]


def _unique_labels(labels: list[str]) -> list[str]:
    """The labels, with #2, #3... added to any that are still equal (same recipe and stamp, other folders)."""
    out: list[str] = []
    for label in labels:
        number, unique = 1, label
        while unique in out:
            number += 1
            unique = f"{label} #{number}"
        out.append(unique)
    return out


def comparison_blocks(views: Sequence[RunView], thresholds: curves.Thresholds) -> list:
    """The blocks of a comparison of several runs."""
    weight = thresholds.smoothing
    table = {v.label: curves.verdicts(v.scalars, thresholds) for v in views}
    finals = {v.label: curves.final_loss(v.scalars, thresholds) for v in views}
    sample_blocks = _compare_samples(views)  # drawing them may add problems, listed at the top
    problems: list[str] = []
    image_metrics = comparison_metric_blocks([v.label for v in views], [v.path for v in views], problems)
    for problem in problems:
        views[0].add_problem(problem)
    blocks: list = [
        Heading("Runs"),
        Table(
            ["Run", "Folder", "State", "Last step", "Final loss", "Glitches"],
            [
                [
                    v.label,
                    str(v.path),
                    v.status.get("state", "unknown"),
                    "-" if v.last_step is None else str(v.last_step),
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
        blocks += [Para(f"{v.label}: {p}", "warn") for p in v.warnings()]
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
    blocks += [Heading("Samples"), *sample_blocks, Heading("Image metrics"), *image_metrics]
    return blocks


def _compare_samples(views: Sequence[RunView]) -> list:
    cells = [samples.latest_per_cell(v.samples) for v in views]
    prompts = sorted({q for c in cells for _, q in c})
    if not prompts:
        return [Para("No sample images in any run.")]
    blocks: list = []
    texts = next((v.prompts for v in views if v.prompts), [])
    owner = {sample.path: v for v in views for sample in v.samples}
    for q in prompts:
        points, note = grid_columns(sorted({p for c in cells for p, qq in c if qq == q}))
        grid = {
            (r, c): cell[(pt, q)].path for r, cell in enumerate(cells) for c, pt in enumerate(points) if (pt, q) in cell
        }
        data, _ = plots.thumbnail_grid([v.label for v in views], [point_label(p) for p in points], grid,
                                       on_unreadable=lambda path, why: unreadable_sample(owner[path])(path, why))
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


#: The files a comparison writes into its folder: comparison.html/.md and these plots.
DOCUMENT = "comparison"
OWN_PLOTS = re.compile(r"(loss|validation)\.png|samples-p\d+\.jpg")


def is_comparison_dir(path: Path) -> bool:
    """A folder an earlier comparison was written into: it holds comparison.html or comparison.md."""
    return any((Path(path) / f"{DOCUMENT}{suffix}").is_file() for suffix in (".html", ".md"))


def new_comparison_dir(parent: Path | str = "comparisons", *, now: datetime | None = None) -> Path:
    """A new folder `<parent>/<UTC time>-<6 hex>`, created here, so two comparisons never share one."""
    parent = Path(parent)
    if run := _run_around(parent):
        raise RunError(f"{parent.absolute()} is inside the run folder {run}; a comparison is never written into a "
                       "run (run gaze compare from elsewhere, or pass --out)")
    return runs.new_stamped_dir(parent, now=now)


def _run_around(path: Path) -> Path | None:
    """The run folder that is `path` or holds it (as written, or with links resolved), or None."""
    for full in (path.absolute(), path.resolve()):
        for folder in (full, *full.parents):
            if runs.is_run_dir(folder):
                return folder
    return None


def check_out_dir(out: Path, *, replace: bool = False) -> None:
    """Refuse a folder a comparison must not be written into; say why and what to do instead.

    Never inside a run folder (the folder or any folder above it); never a file; never a non-empty
    folder unless it holds an earlier comparison and `replace` is given.
    """
    out = Path(out)
    if run := _run_around(out):
        raise RunError(f"--out {out} is inside the run folder {run}; a comparison is never written into a run "
                       "(choose a folder outside it, e.g. comparisons/<name>)")
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder (nothing was written)")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not is_comparison_dir(out):
        raise RunError(f"--out {out} is not empty and holds no earlier comparison; choose a new or empty folder "
                       "(nothing was written)")
    if not replace:
        raise RunError(f"--out {out} holds an earlier comparison; pass --replace to replace it, or choose a new "
                       "folder (nothing was written)")


def _remove_own_plots(out: Path) -> None:
    """Remove the plots an earlier comparison wrote into `out` (and nothing else)."""
    folder = out / runs.PLOTS
    if folder.is_dir() and not folder.is_symlink():
        for path in folder.iterdir():
            if OWN_PLOTS.fullmatch(path.name) and path.is_file() and not path.is_symlink():
                path.unlink()


def write_comparison(
    run_dirs: Sequence[Path | str],
    out_dir: Path | str,
    *,
    thresholds: curves.Thresholds | None = None,
    replace: bool = False,
) -> list[Path]:
    """Write comparison.html, comparison.md and plots/ into out_dir; return the paths written."""
    check_out_dir(Path(out_dir), replace=replace)  # before reading the runs
    return render_comparison(load_runs(run_dirs), out_dir, thresholds, replace=replace)


def render_comparison(
    views: Sequence[RunView],
    out_dir: Path | str,
    thresholds: curves.Thresholds | None = None,
    *,
    replace: bool = False,
) -> list[Path]:
    """`write_comparison` for runs already loaded."""
    thresholds = thresholds or curves.Thresholds()
    out = Path(out_dir)
    check_out_dir(out, replace=replace)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"Comparison of {len(views)} runs"
    blocks = comparison_blocks(views, thresholds)
    if out.is_dir():
        pages.check_writable(out, pages.document_paths(out, DOCUMENT, blocks))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunError(f"--out {out}: a folder above it is a file, not a folder (nothing was written)") from None
    _remove_own_plots(out)
    return pages.write_document(out, DOCUMENT, title, blocks, f"written {stamp}")
