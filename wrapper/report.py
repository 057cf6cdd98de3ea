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

from wrapper import curves, pages, plots, samples
from wrapper.diff import flatten_dict
from wrapper.errors import RunError, did_you_mean
from wrapper.pages import Cell, Fold, Heading, Image, Items, Link, Para, Table
from wrapper.tblog import EventFileWarning, read_run_scalars

if TYPE_CHECKING:
    import pandas as pd

MAX_SAMPLE_COLUMNS = 12
RUN_MARKERS = ("recipe.json", "status.json", "logs")


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


def resolve_run_dir(path: Path | str) -> Path:
    """A run folder, or the newest run in a recipe folder (runs/<recipe>/)."""
    path = Path(path)
    if not path.is_dir():
        siblings = [p.name for p in path.parent.iterdir()] if path.parent.is_dir() else []
        raise RunError(f"no run folder {str(path)!r}{did_you_mean(path.name, siblings)}")
    if any((path / m).exists() for m in RUN_MARKERS):
        return path
    runs = sorted(p for p in path.iterdir() if p.is_dir() and any((p / m).exists() for m in RUN_MARKERS))
    if not runs:
        raise RunError(f"{path} is not a run folder: expected recipe.json, status.json or logs/ in it or below it")
    return runs[-1]


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot read it as JSON ({exc})") from exc


def load_run(run_dir: Path | str, label: str | None = None) -> RunView:
    """Read a run folder's recipe, status, scalars, prompts and samples (warnings are kept)."""
    path = resolve_run_dir(run_dir)
    meta = _json(path / "recipe.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EventFileWarning)  # kept in scalars.attrs["problems"]
        scalars = read_run_scalars(path, run=label or path.name)
    prompts = samples.read_sample_prompts(path / "sample_prompts.txt")
    found = samples.find_samples(path / "output")
    return RunView(
        path,
        label or str(meta.get("name") or path.name),
        meta,
        _json(path / "status.json"),
        scalars,
        prompts,
        found,
    )


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
    rows = [(k, [_show(f.get(k, missing)) for f in flat]) for k in keys]
    return [(k, vals) for k, vals in rows if len(set(vals)) > 1]


def _show(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# ---- blocks shared by reports and comparisons ----------------------------------------------------


def _verdict_table(rows: Sequence[curves.Verdict]) -> Table:
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
                [Table(["Setting", "Value"], [[k, _show(v)] for k, v in flat.items()])],
            )
        )
    return blocks


def _grid_columns(points: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], str]:
    keep = plots.pick_columns(len(points), MAX_SAMPLE_COLUMNS)
    note = f"; {len(keep)} of {len(points)} sample points shown, evenly spread" if len(keep) < len(points) else ""
    return [points[i] for i in keep], note


def _prompt_label(prompts: list[str], index: int) -> str:
    text = prompts[index] if index < len(prompts) else "(prompt not in sample_prompts.txt)"
    return f"P{index:02d}: {text}"


def _label(point: tuple[int, int]) -> str:
    return samples.Sample(Path(), point, 0, "", None).label


# ---- one run -------------------------------------------------------------------------------------


def report_blocks(view: RunView, thresholds: curves.Thresholds) -> list:
    """The blocks of one run's report."""
    weight = thresholds.smoothing
    blocks: list = [b for b in [_state_line(view)] if b] + _log_notes(view)
    blocks += [Heading("Recipe"), *_recipe_items(view)]
    blocks += [Heading("Verdicts"), _verdict_table(curves.verdicts(view.scalars, thresholds))]
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
    for index_file in sorted(view.path.glob("generations/*/index.json")):
        try:
            index = json.loads(index_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        folder = index_file.parent
        text = (f"{folder.name}: {len(index.get('images', []))} images, {index.get('state', '?')}, "
                f"created {index.get('created', '?')}")
        blocks.append(Link(f"generations/{folder.name}/generation.html", text))
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
    points, note = _grid_columns(sorted({p for p, _ in cells}))
    prompts = sorted({q for _, q in cells})
    grid = {
        (r, c): cells[(pt, q)].path for r, q in enumerate(prompts) for c, pt in enumerate(points) if (pt, q) in cells
    }
    data = plots.sample_grid([_prompt_label(view.prompts, q) for q in prompts], [_label(p) for p in points], grid)
    return [Image("plots/samples.jpg", data, "Sample grid", f"rows: prompts; columns: sample points{note}")]


def write_report(run_dir: Path | str, *, thresholds: curves.Thresholds | None = None) -> list[Path]:
    """Write report.html, report.md and plots/ into the run folder; return the paths written."""
    return render_report(load_run(run_dir), thresholds)


def render_report(view: RunView, thresholds: curves.Thresholds | None = None) -> list[Path]:
    """`write_report` for a run already loaded."""
    thresholds = thresholds or curves.Thresholds()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"{view.path.name} · {view.status.get('state', 'state unknown')} · report written {stamp}"
    return pages.write_document(view.path, "report", view.name, report_blocks(view, thresholds), subtitle)


# ---- many runs -----------------------------------------------------------------------------------


def load_runs(run_dirs: Sequence[Path | str]) -> list[RunView]:
    """Load runs with distinct labels: the recipe name, plus the run folder where names repeat."""
    paths = [resolve_run_dir(p) for p in run_dirs]
    names = [str(_json(p / "recipe.json").get("name") or p.parent.name) for p in paths]
    labels = [f"{n} ({p.name})" if names.count(n) > 1 else n for n, p in zip(names, paths, strict=True)]
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
    blocks += [Fold(f"{label}: verdicts with notes and rules", [_verdict_table(rows)]) for label, rows in table.items()]
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
        points, note = _grid_columns(sorted({p for c in cells for p, qq in c if qq == q}))
        grid = {
            (r, c): cell[(pt, q)].path for r, cell in enumerate(cells) for c, pt in enumerate(points) if (pt, q) in cell
        }
        data = plots.sample_grid([v.label for v in views], [_label(p) for p in points], grid)
        blocks.append(Heading(_prompt_label(texts, q), 3))
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
