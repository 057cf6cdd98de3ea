"""Loss reports for one run and comparisons of many: HTML, Markdown and PNG, from a run folder.

A run folder (runs/<recipe>/<stamp>-<hex>/) holds recipe.json, status.json, sample_prompts.txt,
logs/ (TensorBoard) and output/sample/; any of them may be missing (a run still starting, a run
that failed, a run without samples). Reports say what is missing rather than fill it in.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from wrapper.reports.measures import run_metric_blocks
from wrapper.reports.pages import Cell, Fold, Heading, Image, Items, Link, Para, Table
from wrapper.runs import layout as runs

if TYPE_CHECKING:
    import pandas as pd

MAX_SAMPLE_COLUMNS = 12
#: A report's file stem: report.html and report.md (and plots/) in a run folder, or in a sweep folder.
REPORT = "report"
REPORT_HTML = f"{REPORT}.html"


@dataclass
class RunView:
    """Everything a report reads from one run folder; `problems` names each file that could not be used."""

    path: Path
    label: str
    meta: dict
    status: dict
    scalars: pd.DataFrame
    prompts: list[str]
    samples: list[samples.Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.parent.name)

    @property
    def last_step(self) -> int | None:
        return int(self.scalars["step"].max()) if len(self.scalars) else None

    def add_problem(self, text: str) -> None:
        """Note a problem once (a run drawn in a report and then in a comparison finds it twice)."""
        if text not in self.problems:
            self.problems.append(text)

    def warnings(self) -> list[str]:
        """Every problem to tell the user: files that could not be used, damaged logs, a missing loss."""
        missing = curves.loss_missing(self.scalars) if len(self.scalars) else None
        return [*self.problems, *self.scalars.attrs.get("problems", []), *([missing] if missing else [])]


def run_folder(run_dir: Path | str) -> Path:
    """The run folder `run_dir` names (a recipe folder means its newest run), or a RunError saying why not."""
    try:
        return runs.resolve_run_dir(run_dir)
    except OSError as exc:  # a folder that cannot be listed
        raise RunError(f"cannot read {run_dir}: {exc.strerror or exc}") from None


def read_meta(path: Path, problems: list[str]) -> dict:
    """recipe.json's well-typed values ({} when absent); a problem for each that is left out."""
    meta, found = runs.read_fields(path / runs.RECIPE, runs.RecipeRecord)
    problems += [f"{p} (left out of the report)" for p in found]
    return meta


def read_status_record(path: Path, problems: list[str]) -> dict:
    """status.json's well-typed values, a run whose gaze process is gone shown as "lost"."""
    status, found = runs.status_fields(path)
    problems += [f"{p} (left out of the report; the state may show as unknown)" for p in found]
    return status


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_run(run_dir: Path | str, label: str | None = None) -> RunView:
    """Read a run folder's recipe, status, scalars, prompts and samples; what cannot be used becomes a problem."""
    path = run_folder(run_dir)
    problems: list[str] = []
    meta = read_meta(path, problems)
    status = read_status_record(path, problems)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EventFileWarning)  # kept in scalars.attrs["problems"]
        scalars = runs.read_run_scalars(path, run=label or path.name)
    try:
        prompts = samples.read_sample_prompts(path / PROMPTS_FILE)
    except (OSError, ValueError) as exc:
        problems.append(f"{path / PROMPTS_FILE} cannot be read ({exc}); prompts are shown by number")
        prompts = []
    found = samples.find_samples(runs.output_dir(path))
    return RunView(path, label or str(meta.get("name") or path.name), meta, status, scalars, prompts, found, problems)


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
    if state == "lost":
        return Para(f"This run is lost: {view.status.get('message')}. The logs end at {step}.", "bad")
    why = ", ".join(f"{k} {view.status[k]}" for k in ("failure_class", "exit_code") if view.status.get(k) is not None)
    return Para(f"This run {state} ({why or 'no details'}); the logs end at {step}.", "bad")


def problem_blocks(view: RunView) -> list:
    """A warning listing the files of the run that could not be used, if any."""
    if not view.problems:
        return []
    count = len(view.problems)
    return [Para(f"{count} problem{'s' * (count > 1)} reading this run folder; the report shows what could be "
                 "read:", "warn"), Items(view.problems)]


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
    elif missing := curves.loss_missing(view.scalars):
        blocks.append(Para(f"No training loss: {missing}.", "warn"))
    return blocks


def _recipe_items(view: RunView) -> list:
    meta = view.meta
    if not meta:
        if (view.path / runs.RECIPE).exists():
            return [Para(f"{runs.RECIPE} could not be used (see the problems above).", "warn")]
        return [Para(f"No {runs.RECIPE} in this run.", "warn")]
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
            _validation_caption(view.scalars),
            "Validation loss: none logged (the run has no validation split).",
        ),
    ]
    curves_blocks: list = [Heading("Curves")]
    for name, data, alt, caption, missing in pictures:
        curves_blocks.append(Image(f"plots/{name}", data, alt, caption) if data else Para(missing))
    later = [*curves_blocks, Heading("Samples"), *_run_samples(view)]  # drawing them may add problems
    generations = _generations(view)
    if generations:
        later += [Heading("Generations"), *generations]
    image_metrics = run_metric_blocks(view.path, view.problems)
    if image_metrics:
        later += [Heading("Image metrics"), *image_metrics]
    blocks: list = [b for b in [_state_line(view)] if b] + problem_blocks(view) + _log_notes(view)
    blocks += [Heading("Recipe"), *_recipe_items(view)]
    blocks += [Heading("Verdicts"), verdict_table(verdicts)]
    return blocks + later


def _validation_caption(frame: pd.DataFrame) -> str:
    from wrapper.curves.smoothing import validation_pass_seconds

    passes, seconds = validation_pass_seconds(frame)
    cost = f"; {passes} step passes, {seconds:.1f} s each (median, from the log's timestamps)" if seconds else ""
    return "each validation pass's mean loss; epoch points placed at the last step logged before them" + cost


def _generations(view: RunView) -> list:
    """Each `gaze generate` folder of the run: a link to its page and its contact sheets."""
    blocks: list = []
    for index_file in runs.generation_indexes(view.path):
        try:
            index = runs.read_optional(index_file)
        except RunError as exc:
            view.add_problem(f"{exc}; that generation is left out of the report")
            continue
        folder = index_file.parent
        images, sheets = index.get("images"), index.get("sheets")
        count = len(images) if isinstance(images, list) else "?"
        text = f"{folder.name}: {count} images, {index.get('state', '?')}, created {index.get('created', '?')}"
        blocks.append(Link(f"{runs.GENERATIONS}/{folder.name}/{runs.GENERATION_PAGE}", text))
        for sheet in sheets if isinstance(sheets, list) else []:
            file = sheet.get("file") if isinstance(sheet, dict) else None
            path = folder / file if isinstance(file, str) else None
            if path is None or not path.resolve().is_relative_to(folder.resolve()):
                view.add_problem(f"{index_file}: sheet {_short(sheet)} is not a file in {folder}; left out")
            elif path.is_file():
                try:
                    data = plots.as_jpeg(path.read_bytes())
                except (OSError, plots.UnreadableImage) as exc:
                    view.add_problem(f"{path}: unreadable contact sheet ({exc}); left out")
                    continue
                name = f"plots/generation-{folder.name}-{path.stem}.jpg"
                blocks.append(Image(name, data, f"contact sheet {path.stem}", f"{folder.name} / {path.name}"))
    return blocks


def unreadable_sample(view: RunView) -> plots.OnUnreadable:
    """A callback for the thumbnail grid: each sample it cannot draw becomes a problem of `view`."""
    return lambda path, why: view.add_problem(f"{path}: unreadable sample image ({why}); shown as 'unreadable'")


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
                                   grid, on_unreadable=unreadable_sample(view))
    return [Image("plots/samples.jpg", data, "Sample grid", f"rows: prompts; columns: sample points{note}")]


@dataclass(frozen=True)
class Written:
    """A report written: its files, the verdicts it shows and the warnings it lists."""

    paths: list[Path]
    verdicts: list[curves.Verdict]
    warnings: list[str] = field(default_factory=list)


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
    return Written(pages.write_document(view.path, REPORT, view.name, blocks, subtitle), verdicts, view.warnings())
