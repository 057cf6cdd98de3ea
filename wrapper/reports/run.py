"""Loss reports for one run and comparisons of many: HTML, Markdown and PNG, from a run folder.

A run folder (runs/<recipe>/<stamp>-<hex>/) holds recipe.json, status.json, sample_prompts.txt,
logs/ (TensorBoard) and output/sample/; any of them may be missing (a run still starting, a run
that failed, a run without samples). Reports say what is missing rather than fill it in.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from wrapper.curves import verdicts as curves
from wrapper.curves.tblog import EventFileWarning
from wrapper.errors import RunError
from wrapper.kohya import samples
from wrapper.kohya.configs import PROMPTS_FILE
from wrapper.recipe.diff import flatten_dict
from wrapper.reports import pages, plots
from wrapper.reports.pages import Cell, Fold, Heading, Image, Items, Link, Para, Table
from wrapper.runs import layout as runs

if TYPE_CHECKING:
    import pandas as pd

MAX_SAMPLE_COLUMNS = 12


@dataclass
class RunView:
    """Everything a report reads from one run folder."""

    path: Path
    label: str
    meta: dict
    status: dict
    scalars: pd.DataFrame
    prompts: list[str]
    samples: list[samples.Sample] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.parent.name)

    @property
    def last_step(self) -> int | None:
        return int(self.scalars["step"].max()) if len(self.scalars) else None


def load_run(run_dir: Path | str, label: str | None = None) -> RunView:
    """Read a run folder's recipe, status, scalars, prompts and samples (warnings are kept)."""
    path = runs.resolve_run_dir(run_dir)
    meta = asdict(runs.read_recipe_record(path)) if (path / runs.RECIPE).is_file() else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EventFileWarning)  # kept in scalars.attrs["problems"]
        scalars = runs.read_run_scalars(path, run=label or path.name)
    prompts = samples.read_sample_prompts(path / PROMPTS_FILE)
    found = samples.find_samples(runs.output_dir(path))
    return RunView(
        path,
        label or str(meta.get("name") or path.name),
        meta,
        runs.read_optional(path / runs.STATUS),
        scalars,
        prompts,
        found,
    )


def show_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# ---- blocks shared with comparisons (wrapper.reports.compare) ----------------------------------------------------


def verdict_table(rows: Sequence[curves.Verdict]) -> Table:
    return Table(
        ["Metric", "Status", "Notes"],
        [[v.metric, Cell(v.status, v.level), Cell(v.notes, sub=f"Rule: {v.rule}" if v.rule else None)] for v in rows],
    )


def _state_line(view: RunView) -> Para | None:
    state = view.status.get("state")
    step = f"step {view.last_step}" if view.last_step is not None else "no logged step"
    if state in (None, "succeeded"):
        return None if state else Para("No status.json: the run's state is unknown.", "warn")
    if state in ("running", "queued"):
        return Para(f"This run is {state}: everything below is as of {step}; verdicts are provisional.", "warn")
    why = ", ".join(f"{k} {view.status[k]}" for k in ("failure_class", "exit_code") if view.status.get(k) is not None)
    return Para(f"This run {state} ({why or 'no details'}); the logs end at {step}.", "bad")


def _log_notes(view: RunView) -> list:
    problems, notes = view.scalars.attrs.get("problems", []), view.scalars.attrs.get("notes", [])
    blocks: list = []
    if problems:
        blocks += [
            Para(f"{len(problems)} problem(s) in the event files; the rows before each were kept:", "warn"),
            Items(problems),
        ]
    if notes:
        blocks += [Para("Logging folders joined into one series (a resumed run):"), Items(notes)]
    if not len(view.scalars):
        blocks.append(Para("No scalars in the logs (no event files under logs/, or none with data).", "warn"))
    return blocks


def _recipe_items(view: RunView) -> list:
    meta = view.meta
    if not meta:
        return [Para("No recipe.json in this run.", "warn")]
    glitches = set(meta.get("glitches") or [])
    mods = [Cell(m, "bad", "deliberate glitch") if m in glitches else Cell(m) for m in meta.get("modifiers") or []]
    items: list = [
        Cell(f"Recipe: {meta.get('name', '?')}"),
        Cell(f"Baseline: {meta.get('baseline', '?')}"),
        Cell(f"Family: {meta.get('family', '?')}"),
    ]
    blocks: list = [Items(items)]
    if meta.get("description"):
        blocks.insert(0, Para(str(meta["description"])))
    blocks += [Para("Modifiers:"), Items(mods)] if mods else [Para("Modifiers: none (the baseline recipe).")]
    if glitches:
        blocks.append(
            Para(
                f"Deliberate glitches: {', '.join(sorted(glitches))}. This run is meant to "
                "show a failure; read its verdicts with that in mind.",
                "warn",
            )
        )
    flat = flatten_dict(meta.get("recipe") or {})
    if flat:
        blocks.append(
            Fold(
                f"All recipe values ({len(flat)})",
                [Table(["Setting", "Value"], [[k, show_value(v)] for k, v in flat.items()])],
            )
        )
    return blocks


def grid_columns(points: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], str]:
    keep = plots.pick_columns(len(points), MAX_SAMPLE_COLUMNS)
    note = f"; {len(keep)} of {len(points)} sample points shown, evenly spread" if len(keep) < len(points) else ""
    return [points[i] for i in keep], note


def prompt_label(prompts: list[str], index: int) -> str:
    text = prompts[index] if index < len(prompts) else "(prompt not in sample_prompts.txt)"
    return f"P{index:02d}: {text}"


def point_label(point: tuple[int, int]) -> str:
    return samples.Sample(Path(), point, 0, "", None).label


# ---- one run -------------------------------------------------------------------------------------


def report_blocks(view: RunView, thresholds: curves.Thresholds, verdicts: Sequence[curves.Verdict]) -> list:
    """The blocks of one run's report, around its verdicts."""
    weight = thresholds.smoothing
    blocks: list = [b for b in [_state_line(view)] if b] + _log_notes(view)
    blocks += [Heading("Recipe"), *_recipe_items(view)]
    blocks += [Heading("Verdicts"), verdict_table(verdicts)]
    pictures = [
        (
            "loss.png",
            plots.loss_plot(view.scalars, weight),
            "Training loss",
            f"raw per-step loss (faint), smoothed as TensorBoard does (weight {weight}); every point",
            "Training loss: not in the logs.",
        ),
        (
            "lr.png",
            plots.lr_plot(view.scalars),
            "Learning rate",
            "every lr/* tag; lr/group<i> dashed",
            "Learning rate: not in the logs.",
        ),
        (
            "validation.png",
            plots.validation_plot(view.scalars, weight),
            "Validation loss",
            "validation averages; epoch points placed at the last step logged before them",
            "Validation loss: none logged (the run has no validation split).",
        ),
    ]
    blocks.append(Heading("Curves"))
    for name, data, alt, caption, missing in pictures:
        blocks.append(Image(f"plots/{name}", data, alt, caption) if data else Para(missing))
    blocks += [Heading("Samples"), *_run_samples(view)]
    generations = _generations(view)
    if generations:
        blocks += [Heading("Generations"), *generations]
    return blocks


def _generations(view: RunView) -> list:
    """Each `gaze generate` folder of the run: a link to its page and its contact sheets."""
    blocks: list = []
    for index_file in runs.generation_indexes(view.path):
        try:
            index = runs.read_optional(index_file)
        except RunError:
            continue
        folder = index_file.parent
        text = (f"{folder.name}: {len(index.get('images', []))} images, {index.get('state', '?')}, "
                f"created {index.get('created', '?')}")
        blocks.append(Link(f"{runs.GENERATIONS}/{folder.name}/{runs.GENERATION_PAGE}", text))
        for sheet in index.get("sheets", []):
            path = folder / sheet["file"]
            if path.is_file():
                name = f"plots/generation-{folder.name}-{path.stem}.jpg"
                blocks.append(Image(name, plots.as_jpeg(path.read_bytes()), f"contact sheet {path.stem}",
                                    f"{folder.name} / {path.name}"))
    return blocks


def _run_samples(view: RunView) -> list:
    if not view.samples:
        return [Para("No sample images in output/sample.")]
    cells = samples.latest_per_cell(view.samples)
    points, note = grid_columns(sorted({p for p, _ in cells}))
    prompts = sorted({q for _, q in cells})
    grid = {
        (r, c): cells[(pt, q)].path for r, q in enumerate(prompts) for c, pt in enumerate(points) if (pt, q) in cells
    }
    data, _ = plots.thumbnail_grid([prompt_label(view.prompts, q) for q in prompts], [point_label(p) for p in points],
                                   grid)
    return [Image("plots/samples.jpg", data, "Sample grid", f"rows: prompts; columns: sample points{note}")]


@dataclass(frozen=True)
class Written:
    """A report written: its files, and the verdicts it shows."""

    paths: list[Path]
    verdicts: list[curves.Verdict]


def write_report(run_dir: Path | str, *, thresholds: curves.Thresholds | None = None) -> Written:
    """Write report.html, report.md and plots/ into the run folder."""
    return render_report(load_run(run_dir), thresholds)


def render_report(view: RunView, thresholds: curves.Thresholds | None = None) -> Written:
    """`write_report` for a run already loaded."""
    thresholds = thresholds or curves.Thresholds()
    verdicts = curves.verdicts(view.scalars, thresholds)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"{view.path.name} · {view.status.get('state', 'state unknown')} · report written {stamp}"
    blocks = report_blocks(view, thresholds, verdicts)
    return Written(pages.write_document(view.path, "report", view.name, blocks, subtitle), verdicts)
