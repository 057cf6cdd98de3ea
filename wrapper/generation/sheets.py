"""Contact sheets: one PNG per prompt, images on a grid with labelled, nested axes.

Rows and columns are each a list of axes (outermost first), for example rows = steps x CFG and
columns = sampler x negative on/off. Axes with one value are left out and named in the subtitle.
The layout is computed from index.json entries alone, so a sheet can be redrawn from the index.
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wrapper.errors import ConfigError, did_you_mean
from wrapper.kohya.gen_img import format_number

AXES = ("source", "sampler", "steps", "cfg", "negative", "weight", "seed")
DEFAULT_ROWS = ("steps", "cfg", "weight", "seed")
DEFAULT_COLS = ("sampler", "negative", "source")
PAD = 8
FONT_SIZE = 14
TITLE_SIZE = 16
BACKGROUND, INK, RULE, EMPTY = (255, 255, 255), (20, 20, 20), (170, 170, 170), (225, 225, 225)


def axis_label(axis: str, value: object) -> str:
    """How a value is written on a sheet: '20 steps', 'CFG 7', 'neg off', 'LoRA x0.6', 'seed 1'."""
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
    return str(value)


def axis_values(entries: Sequence[dict], axis: str) -> list:
    """The axis's distinct values in order of first appearance."""
    return list(dict.fromkeys(e[axis] for e in entries))


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
        where = (row_at[tuple(entry[a] for a in rows)], col_at[tuple(entry[a] for a in cols)])
        if where in cells:
            raise ConfigError(
                f"two images fall into one sheet cell ({entry['file']}, {cells[where]['file']}); "
                "put every varying axis in the rows or the columns"
            )
        cells[where] = entry
    fixed = {a: v[0] for a, v in values.items() if len(v) == 1 and a not in rows and a not in cols}
    return Layout(tuple(rows), tuple(cols), tuple(row_keys), tuple(col_keys), cells, fixed)


def _offsets(keys: Sequence[tuple], cell: int) -> list[int]:
    """Start of each cell along one side: a small gap inside a group, a wide one between groups."""
    positions, at = [], 0
    for i, key in enumerate(keys):
        if i:
            at += 2 if key[:-1] == keys[i - 1][:-1] else 10
        positions.append(at)
        at += cell
    return positions


def _spans(keys: Sequence[tuple], level: int) -> list[tuple[int, int, object]]:
    """(first index, last index, value) of each run of keys sharing their first level+1 values."""
    spans = []
    for i, key in enumerate(keys):
        if spans and keys[spans[-1][0]][: level + 1] == key[: level + 1]:
            spans[-1] = (spans[-1][0], i, spans[-1][2])
        else:
            spans.append((i, i, key[level]))
    return spans


@dataclass(frozen=True)
class Geometry:
    """Pixel positions of a sheet: grid origin, cell offsets, row-label column widths, heading lines."""

    left: int
    top: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]
    label_widths: tuple[int, ...]
    heading: tuple[tuple[str, bool], ...]  # (text, is_title)
    size: tuple[int, int]

    def box(self, row: int, col: int) -> tuple[int, int]:
        """Top-left corner of the cell at (row, col)."""
        return self.left + self.xs[col], self.top + self.ys[row]


def sheet_geometry(sheet: Layout, thumb: int, title: str, subtitle: str, measure) -> Geometry:
    """Lay the sheet out in pixels; `measure(text, is_title)` gives a text's width."""
    widths = tuple(
        int(max((measure(axis_label(a, k[i]), False) for k in sheet.row_keys), default=0)) + 2 * PAD
        for i, a in enumerate(sheet.rows)
    )
    xs, ys = _offsets(sheet.col_keys, thumb), _offsets(sheet.row_keys, thumb)
    left = sum(widths) + PAD
    width = max(left + xs[-1] + thumb + PAD, 480)
    chars = max(20, int((width - 2 * PAD) / measure("n", True)))
    heading = [(t, True) for t in textwrap.wrap(title, chars)]
    for paragraph in subtitle.splitlines():
        heading += [(t, False) for t in textwrap.wrap(paragraph, int(chars * TITLE_SIZE / FONT_SIZE))]
    top = PAD + len(heading) * (TITLE_SIZE + 6) + PAD + len(sheet.cols) * (FONT_SIZE + PAD)
    return Geometry(left, top, tuple(xs), tuple(ys), widths, tuple(heading), (width, top + ys[-1] + thumb + PAD))


def _fit(text: str, width: float, font) -> str:
    """Shorten text with an ellipsis until it fits the width."""
    while len(text) > 1 and font.getlength(text) > width:
        text = text[:-2] + "\u2026"
    return text


def render_sheet(sheet: Layout, root: Path, out: Path, *, title: str, subtitle: str, thumb: int) -> Geometry:
    """Draw the sheet to `out` (PNG), images read relative to `root`; return where everything went."""
    from PIL import Image, ImageDraw, ImageFont

    font, bold = ImageFont.load_default(size=FONT_SIZE), ImageFont.load_default(size=TITLE_SIZE)
    geo = sheet_geometry(sheet, thumb, title, subtitle, lambda t, big: (bold if big else font).getlength(t))
    image = Image.new("RGB", geo.size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    for i, (text, big) in enumerate(geo.heading):
        draw.text((PAD, PAD + i * (TITLE_SIZE + 6)), text, fill=INK, font=bold if big else font)
    line = FONT_SIZE + PAD
    for level, axis in enumerate(sheet.cols):
        y = geo.top - (len(sheet.cols) - level) * line
        for first, last, value in _spans(sheet.col_keys, level):
            x0, x1 = geo.left + geo.xs[first], geo.left + geo.xs[last] + thumb
            text = _fit(axis_label(axis, value), x1 - x0, font)
            draw.text(((x0 + x1 - font.getlength(text)) / 2, y + 2), text, fill=INK, font=font)
            draw.line([(x0, y + line - 4), (x1, y + line - 4)], fill=RULE)
    x = PAD
    for level, axis in enumerate(sheet.rows):
        for first, last, value in _spans(sheet.row_keys, level):
            y0, y1 = geo.top + geo.ys[first], geo.top + geo.ys[last] + thumb
            draw.text((x, (y0 + y1 - FONT_SIZE) / 2), axis_label(axis, value), fill=INK, font=font)
            rule_x = x + geo.label_widths[level] - PAD / 2
            draw.line([(rule_x, y0), (rule_x, y1)], fill=RULE)
        x += geo.label_widths[level]
    for (r, c), entry in sheet.cells.items():
        _paste(image, draw, root / entry["file"], geo.box(r, c), thumb, font)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return geo


def _paste(image, draw, path: Path, box: tuple[int, int], thumb: int, font) -> None:
    """Put one image (shrunk to the cell) at box, or a grey 'missing' cell."""
    from PIL import Image

    if not path.is_file():
        draw.rectangle([box, (box[0] + thumb - 1, box[1] + thumb - 1)], fill=EMPTY)
        draw.text((box[0] + PAD, box[1] + PAD), "missing", fill=INK, font=font)
        return
    with Image.open(path) as picture:
        picture = picture.convert("RGB")
        picture.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
        image.paste(picture, box)


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
        subtitle = (
            f"negative prompt: {prompt['negative_prompt'] or '(none)'}\n"
            f"checkpoint: {sources} | fixed: {fixed} | {entries[0]['width']}x{entries[0]['height']} px"
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


PAGE_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 16px; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
img.sheet { max-width: 100%; border: 1px solid #ddd; }
.neg { color: #666; }
"""


def _text(value: object) -> str:
    return format_number(value) if isinstance(value, float) else str(value)


def _img_data(path: Path) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def write_page(root: Path, index: dict, *, title: str = "Generations") -> Path:
    """Write root/generation.html: settings, every sheet embedded, and a table linking every image."""
    from html import escape

    grid = index["grid"]
    seconds = sum(p.get("duration_s", 0.0) for p in index["processes"])
    count = len(index["images"])
    facts = [
        ("state", index["state"]),
        ("checkpoints", "<br>".join(f"{escape(s['label'])}: {escape(s['lora'])}" for s in index["sources"])),
        ("base model", "<br>".join(sorted({escape(s["model"]) for s in index["sources"]}))),
        ("prompt file", escape(index["prompt_file"])),
        ("grid", "<br>".join(f"{k} = {escape(', '.join(map(_text, v)))}" for k, v in grid.items())),
        ("seeds", escape(", ".join(map(str, index["seeds"])))),
        ("size, precision", f"{index['size']} px, {escape(index['precision'])}"),
        (
            "images",
            f"{count} in {len(index['processes'])} gen_img.py process(es), "
            f"{seconds:.0f} s ({seconds / max(count, 1):.1f} s per image, model loading included)",
        ),
        ("created", escape(index["created"])),
    ]
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>{escape(title)}</title><style>{PAGE_STYLE}</style>",
        f"<h1>{escape(title)}</h1><table>",
    ]
    parts += [f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts]
    parts.append("</table>")
    prompts = {p["id"]: p for p in index["prompts"]}
    for sheet in index["sheets"]:
        prompt = prompts[sheet["prompt_id"]]
        axes = f"rows: {' x '.join(sheet['rows']) or '-'}; columns: {' x '.join(sheet['cols']) or '-'}"
        parts += [
            f"<h2>{escape(prompt['id'])}: {escape(prompt['prompt'])}</h2>",
            f"<p class='neg'>negative prompt: {escape(prompt['negative_prompt'] or '(none)')}<br>{escape(axes)}</p>",
            f"<a href='{escape(sheet['file'])}'><img class='sheet' src='{_img_data(root / sheet['file'])}' "
            f"alt='contact sheet {escape(prompt['id'])}'></a>",
        ]
    columns = ("file", "source", "prompt_id", "sampler", "steps", "cfg", "negative", "weight", "seed")
    parts.append(f"<details><summary>All {count} images</summary><table><tr>")
    parts += [f"<th>{c}</th>" for c in columns] + ["</tr>"]
    for entry in index["images"]:
        cells = [f"<a href='{escape(entry['file'])}'>{escape(entry['file'])}</a>"]
        cells += [escape(_text(entry[c])) for c in columns[1:]]
        parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table></details>")
    path = root / "generation.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
