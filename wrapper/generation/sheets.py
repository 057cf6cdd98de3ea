"""Contact sheets: one PNG per prompt, images on a grid with labelled, nested axes; and the page.

Rows and columns are each a list of axes (outermost first), for example rows = steps x CFG and
columns = sampler x negative on/off. Axes with one value are left out and named in the subtitle.
The layout is computed from index.json entries alone, so a sheet can be redrawn from the index.
Sheets are drawn by the reports' thumbnail grid and the page is written by the reports' pages.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wrapper.errors import ConfigError, did_you_mean
from wrapper.files import write_atomic
from wrapper.generation.grid import DEFAULT_BASE
from wrapper.kohya.prompt_lines import format_number
from wrapper.reports.measures import metric_blocks, read_metrics
from wrapper.reports.pages import Block, Cell, Fold, Heading, Image, Link, Para, Table, to_html
from wrapper.reports.plots import GridGeometry, thumbnail_grid
from wrapper.runs.layout import GENERATION_PAGE

AXES = ("source", "base", "sampler", "steps", "cfg", "negative", "weight", "seed")
DEFAULT_ROWS = ("steps", "cfg", "weight", "seed")
DEFAULT_COLS = ("base", "sampler", "negative", "source")


def entry_value(entry: dict, axis: str) -> object:
    """An entry's value on an axis (entries written before the base axis existed are on their own base)."""
    return entry.get(axis, DEFAULT_BASE) if axis == "base" else entry[axis]


def axis_label(axis: str, value: object) -> str:
    """How a value is written on a sheet: '20 steps', 'CFG 7', 'neg off', 'LoRA x0.6', 'seed 1', 'own base',
    'MISMATCHED base: other'."""
    if axis == "steps":
        return f"{value} steps"
    if axis == "cfg":
        return f"CFG {format_number(value)}"
    if axis == "negative":
        return f"neg {value}"
    if axis == "weight":
        return f"LoRA x{format_number(value)}"
    if axis == "seed":
        return f"seed {value}"
    if axis == "base":
        return "own base" if value == DEFAULT_BASE else f"MISMATCHED base: {value}"
    return str(value)


def axis_values(entries: Sequence[dict], axis: str) -> list:
    """The axis's distinct values in order of first appearance."""
    return list(dict.fromkeys(entry_value(e, axis) for e in entries))


def sheet_axes(entries: Sequence[dict], rows: Sequence[str] = (), cols: Sequence[str] = ()) -> tuple[list, list]:
    """Check the chosen row and column axes and place every varying axis left out.

    With neither given, the defaults are used. Axes left out go to the side that was not given
    (to the rows when both were). An axis with a single value is dropped.
    """
    problems = [
        f"unknown sheet axis {a!r}{did_you_mean(a, AXES)}; expected {', '.join(AXES)}"
        for a in [*rows, *cols]
        if a not in AXES
    ]
    problems += [f"sheet axis {a!r} is both a row and a column axis" for a in set(rows) & set(cols)]
    if problems:
        raise ConfigError("; ".join(problems))
    varying = [a for a in AXES if len(axis_values(entries, a)) > 1]
    only_rows_given = bool(rows) and not cols
    if not rows and not cols:
        rows, cols = DEFAULT_ROWS, DEFAULT_COLS
    placed_rows = [a for a in rows if a in varying]
    placed_cols = [a for a in cols if a in varying]
    leftover = [a for a in varying if a not in placed_rows and a not in placed_cols]
    (placed_cols if only_rows_given else placed_rows).extend(leftover)
    return placed_rows, placed_cols


@dataclass(frozen=True)
class Layout:
    """Where each image of one prompt goes: row and column keys are tuples of axis values."""

    rows: tuple[str, ...]
    cols: tuple[str, ...]
    row_keys: tuple[tuple, ...]
    col_keys: tuple[tuple, ...]
    cells: dict[tuple[int, int], dict]
    fixed: dict[str, object]


def layout(entries: Sequence[dict], rows: Sequence[str], cols: Sequence[str]) -> Layout:
    """Place entries on the grid; two entries in one cell means an axis was left out (an error)."""
    values = {a: axis_values(entries, a) for a in AXES}
    row_keys = list(itertools.product(*(values[a] for a in rows)))
    col_keys = list(itertools.product(*(values[a] for a in cols)))
    row_at = {k: i for i, k in enumerate(row_keys)}
    col_at = {k: i for i, k in enumerate(col_keys)}
    cells: dict[tuple[int, int], dict] = {}
    for entry in entries:
        where = (row_at[tuple(entry_value(entry, a) for a in rows)], col_at[tuple(entry_value(entry, a) for a in cols)])
        if where in cells:
            raise ConfigError(
                f"two images fall into one sheet cell ({entry['file']}, {cells[where]['file']}); "
                "put every varying axis in the rows or the columns"
            )
        cells[where] = entry
    fixed = {a: v[0] for a, v in values.items() if len(v) == 1 and a not in rows and a not in cols}
    return Layout(tuple(rows), tuple(cols), tuple(row_keys), tuple(col_keys), cells, fixed)


def render_sheet(sheet: Layout, root: Path, out: Path, *, title: str, subtitle: str, thumb: int) -> GridGeometry:
    """Draw the sheet to `out` (PNG), images read relative to `root`; return where everything went."""
    rows = [tuple(axis_label(a, key[i]) for i, a in enumerate(sheet.rows)) for key in sheet.row_keys]
    cols = [tuple(axis_label(a, key[i]) for i, a in enumerate(sheet.cols)) for key in sheet.col_keys]
    cells = {where: root / entry["file"] for where, entry in sheet.cells.items()}
    data, geometry = thumbnail_grid(rows, cols, cells, thumb=thumb, title=title, subtitle=subtitle,
                                    image_format="PNG")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return geometry


def write_sheets(root: Path, index: dict, rows: Sequence[str] = (), cols: Sequence[str] = (), thumb: int = 256) -> list:
    """One sheet per prompt into root/sheets/<prompt id>.png; returns the index's 'sheets' records."""
    records = []
    for prompt in index["prompts"]:
        entries = [e for e in index["images"] if e["prompt_id"] == prompt["id"]]
        if not entries:
            continue
        row_axes, col_axes = sheet_axes(entries, rows, cols)
        sheet = layout(entries, row_axes, col_axes)
        fixed = ", ".join(axis_label(a, v) for a, v in sheet.fixed.items() if a != "source") or "-"
        sources = ", ".join(axis_values(entries, "source"))
        mismatched = sorted({f"{e['base']} = {e['base_model']}" for e in entries if e.get("mismatched")})
        subtitle = (
            f"negative prompt: {prompt['negative_prompt'] or '(none)'}\n"
            f"checkpoint: {sources} | fixed: {fixed} | {entries[0]['width']}x{entries[0]['height']} px"
            + (f"\ndeliberately MISMATCHED base (the LoRA was trained on another): {'; '.join(mismatched)}"
               if mismatched else "")
        )
        file = f"sheets/{prompt['id']}.png"
        geo = render_sheet(
            sheet,
            root,
            root / file,
            title=f"{prompt['id']}: {prompt['prompt']}",
            subtitle=subtitle,
            thumb=min(thumb, entries[0]["width"]),
        )
        records.append(
            {
                "prompt_id": prompt["id"],
                "file": file,
                "rows": row_axes,
                "cols": col_axes,
                "row_count": len(sheet.row_keys),
                "col_count": len(sheet.col_keys),
                "size": list(geo.size),
            }
        )
    return records


def _show(value: object) -> str:
    return format_number(value) if isinstance(value, float) else str(value)


def page_blocks(root: Path, index: dict) -> list[Block]:
    """The generation page: settings, checkpoints, every sheet embedded, and a table of every image."""
    seconds = sum(p.get("duration_s", 0.0) for p in index["processes"])
    count = len(index["images"])
    settings = [
        ("state", index["state"]),
        ("prompt file", index["prompt_file"]),
        *((f"grid: {axis}", ", ".join(map(_show, values))) for axis, values in index["grid"].items()),
        ("seeds", ", ".join(map(str, index["seeds"]))),
        ("size, precision", f"{index['size']} px, {index['precision']}"),
        ("images", f"{count} in {len(index['processes'])} gen_img.py process(es), {seconds:.0f} s "
                   f"({seconds / max(count, 1):.1f} s per image, model loading included)"),
        ("created", index["created"]),
    ]
    blocks: list[Block] = [
        Table(["setting", "value"], settings),
        Table(["checkpoint", "LoRA", "trained on"], [(s["label"], s["lora"], s["model"]) for s in index["sources"]]),
    ]
    mismatched = [b for b in index.get("bases", []) if b["mismatched"]]
    if mismatched:
        blocks += [Para("Deliberately mismatched bases: the LoRA rendered on another checkpoint than it was "
                        "trained on (the research log's glitch)."),
                   Table(["checkpoint", "rendered on", "base model"],
                         [(b["source"], b["base"], b["model"]) for b in mismatched])]
    prompts = {p["id"]: p for p in index["prompts"]}
    for sheet in index["sheets"]:
        prompt = prompts[sheet["prompt_id"]]
        axes = f"rows: {' x '.join(sheet['rows']) or '-'}; columns: {' x '.join(sheet['cols']) or '-'}"
        blocks += [
            Heading(f"{prompt['id']}: {prompt['prompt']}"),
            Para(f"negative prompt: {prompt['negative_prompt'] or '(none)'}"
                 + (f" | {prompt['tokens']} CLIP tokens (negative {prompt['negative_tokens']})"
                    if "tokens" in prompt else "")),
            Image(sheet["file"], (root / sheet["file"]).read_bytes(), f"contact sheet {prompt['id']}", axes),
            Link(sheet["file"], f"{sheet['file']} (full size)"),
        ]
    columns = ("file", "source", "base", "prompt_id", "sampler", "steps", "cfg", "negative", "weight", "seed")
    rows = [[Cell(e["file"], href=e["file"]), *(_show(e.get(c, DEFAULT_BASE)) for c in columns[1:])]
            for e in index["images"]]
    blocks.append(Fold(f"All {count} images", [Table(columns, rows)]))
    problems: list[str] = []
    measured = read_metrics(root, problems)  # `gaze metrics` (or `generate --metrics`) has run
    if measured:
        blocks += [Heading("Image metrics"), *metric_blocks(measured, "This grid")]
    blocks += [Para(p, "warn") for p in problems]
    return blocks


def write_page(root: Path, index: dict) -> Path:
    """Write root/generation.html (self-contained: the sheets are embedded); return its path."""
    labels = sorted({str(s.get("label")) for s in index.get("sources", []) if isinstance(s, dict)})
    title = f"Generations: {', '.join(labels)} ({root.name})" if labels else f"Generations ({root.name})"
    path = root / GENERATION_PAGE
    write_atomic(path, to_html(title, page_blocks(root, index)))
    return path
