"""Pictures for reports: loss, learning-rate and validation plots (PNG) and the one thumbnail grid.

Every function returns encoded image bytes (the grid also its layout), or None when the data for that
picture is absent. Matplotlib is used through `Figure` objects (no pyplot state), so plotting is
safe anywhere. The grid (Pillow) draws the reports' sample grids and gaze generate's contact sheets.
"""

from __future__ import annotations

import io
import itertools
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wrapper.curves.smoothing import epoch_steps, loss_tag, series, smooth
from wrapper.kohya.logs import LOSS_AVERAGE, LOSS_EPOCH, LR_PREFIX, VAL_EPOCH, VAL_STEP

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SIZE = (10, 4.2)
DPI = 100


def _figure() -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, ax


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _colors(n: int) -> list:
    from matplotlib import colormaps

    return [colormaps["tab10" if n <= 10 else "tab20"](i % 20) for i in range(n)]


def _legend(ax: Axes, count: int) -> None:
    if count > 6:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    elif count:
        ax.legend(fontsize="small")


def loss_plot(frame: pd.DataFrame, weight: float) -> bytes | None:
    """One run: raw per-step loss (faint), smoothed, the epoch window mean and the epoch averages."""
    import numpy as np

    tag = loss_tag(frame)
    if tag is None:
        return None
    fig, ax = _figure()
    steps, values = series(frame, tag)
    ax.plot(steps, values, color="C0", alpha=0.25, linewidth=0.8, label=f"{tag} (raw)")
    ax.plot(steps, smooth(values, weight), color="C0", linewidth=1.8, label=f"{tag} smoothed ({weight})")
    if tag != LOSS_AVERAGE and (frame["tag"] == LOSS_AVERAGE).any():
        ax.plot(*series(frame, LOSS_AVERAGE), color="C1", linewidth=1, label=LOSS_AVERAGE)
    if (frame["tag"] == LOSS_EPOCH).any():
        ax.plot(*epoch_steps(frame, LOSS_EPOCH), "o", color="C2", label=f"{LOSS_EPOCH} (at epoch end)")
    bad = steps[~np.isfinite(values)]
    for i, step in enumerate(bad[:50]):
        ax.axvline(step, color="red", alpha=0.5, linewidth=0.8, label="NaN / inf" if i == 0 else None)
    ax.set_ylabel("loss")
    ax.set_title("Training loss")
    _legend(ax, 4)
    return _png(fig)


def overlay_plot(frames: Mapping[str, pd.DataFrame], weight: float, *, validation: bool = False) -> bytes | None:
    """Several runs' smoothed training (or validation) loss on one step axis."""
    fig, ax = _figure()
    drawn = 0
    for (label, frame), color in zip(frames.items(), _colors(len(frames)), strict=True):
        if validation:
            steps, values = _validation(frame)
            if len(steps):
                ax.plot(steps, values, "o-", color=color, markersize=3, linewidth=1.2, label=label)
                drawn += 1
            continue
        tag = loss_tag(frame)
        if tag:
            steps, values = series(frame, tag)
            ax.plot(steps, smooth(values, weight), color=color, linewidth=1.4, label=label)
            drawn += 1
    if not drawn:
        return None
    ax.set_ylabel("validation loss" if validation else f"smoothed loss ({weight})")
    ax.set_title("Validation loss" if validation else "Smoothed training loss")
    _legend(ax, drawn)
    return _png(fig)


def seed_band_plot(groups: Mapping[str, Sequence[pd.DataFrame]], weight: float, *, validation: bool = False
                   ) -> bytes | None:
    """Each variant's curve averaged over its seeds, with the seeds' spread (lowest to highest) as a band."""
    import numpy as np

    fig, ax = _figure()
    drawn = 0
    for (label, frames), color in zip(groups.items(), _colors(len(groups)), strict=True):
        curves = []
        for frame in frames:
            if validation:
                steps, values = _validation(frame)
            else:
                tag = loss_tag(frame)
                steps, values = series(frame, tag) if tag else (np.empty(0), np.empty(0))
                values = smooth(values, weight) if len(values) else values
            keep = np.isfinite(values)
            if keep.any():
                curves.append((np.asarray(steps)[keep], np.asarray(values)[keep]))
        if not curves:
            continue
        low, high = max(c[0][0] for c in curves), min(c[0][-1] for c in curves)
        grid = np.unique(np.concatenate([c[0] for c in curves]))
        grid = grid[(grid >= low) & (grid <= high)] if low <= high else grid[:0]
        if not len(grid):
            continue
        stacked = np.vstack([np.interp(grid, s, v) for s, v in curves])
        mark = "o-" if validation else "-"
        ax.plot(grid, stacked.mean(axis=0), mark, color=color, linewidth=1.5, markersize=3,
                label=f"{label} (mean of {len(curves)} seed{'s' * (len(curves) != 1)})")
        if len(curves) > 1:
            ax.fill_between(grid, stacked.min(axis=0), stacked.max(axis=0), color=color, alpha=0.2, linewidth=0)
        drawn += 1
    if not drawn:
        return None
    ax.set_ylabel("validation loss" if validation else f"smoothed loss ({weight})")
    what = "Validation loss" if validation else "Smoothed training loss"
    ax.set_title(f"{what} over seeds (band: lowest to highest)")
    _legend(ax, drawn)
    return _png(fig)


def _validation(frame: pd.DataFrame) -> tuple:
    if (frame["tag"] == VAL_STEP).any():
        return series(frame, VAL_STEP)
    return epoch_steps(frame, VAL_EPOCH)


def validation_plot(frame: pd.DataFrame, weight: float) -> bytes | None:
    """One run's validation loss with its smoothed training loss for reference."""
    present = set(frame["tag"].unique())
    if not present & {VAL_STEP, VAL_EPOCH}:
        return None
    fig, ax = _figure()
    if VAL_STEP in present:
        ax.plot(*series(frame, VAL_STEP), "o-", color="C3", markersize=3, label=VAL_STEP)
    if VAL_EPOCH in present:
        ax.plot(*epoch_steps(frame, VAL_EPOCH), "s", color="C4", label=f"{VAL_EPOCH} (at epoch end)")
    tag = loss_tag(frame)
    if tag:
        steps, values = series(frame, tag)
        ax.plot(steps, smooth(values, weight), color="C0", alpha=0.6, linewidth=1, label=f"{tag} smoothed")
    ax.set_ylabel("loss")
    ax.set_title("Validation loss")
    _legend(ax, 3)
    return _png(fig)


def lr_plot(frame: pd.DataFrame) -> bytes | None:
    """Every lr/* tag of one run (sd-scripts logs each param group twice: lr/group<i> dashed)."""
    tags = sorted(t for t in frame["tag"].unique() if str(t).startswith(LR_PREFIX))
    if not tags:
        return None
    fig, ax = _figure()
    for i, tag in enumerate(tags):
        dashed = tag.startswith(LR_PREFIX + "group")
        ax.plot(*series(frame, tag), linestyle="--" if dashed else "-", color=f"C{i % 10}", label=tag)
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.set_title("Learning rate")
    _legend(ax, len(tags))
    return _png(fig)


# ---- thumbnail grids: run and comparison samples, generation contact sheets -----------------------------------

PAD, FONT_SIZE, TITLE_SIZE = 8, 14, 16
BACKGROUND, INK, RULE, EMPTY, BAD = (255, 255, 255), (20, 20, 20), (170, 170, 170), (225, 225, 225), (197, 34, 31)
Key = str | tuple[str, ...]  # a row's or column's labels, outermost first; a str is one level
Measure = Callable[[str, bool], float]  # (text, is_title) -> width in pixels


def pick_columns(count: int, limit: int) -> list[int]:
    """Indices of at most `limit` of `count` columns, evenly spread, first and last included."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


@dataclass(frozen=True)
class GridGeometry:
    """Pixel positions of a grid: origin, cell offsets, row-label column widths, heading lines, size."""

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


def _levels(keys: Sequence[Key]) -> list[tuple[str, ...]]:
    return [(key,) if isinstance(key, str) else tuple(key) for key in keys]


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


def _fit(text: str, width: float, measure: Callable[[str], float]) -> str:
    """Shorten text with an ellipsis until it fits the width."""
    while len(text) > 1 and measure(text) > width:
        text = text[:-2] + "\u2026"
    return text


def _wrap(text: str, width: float, measure: Callable[[str], float]) -> list[str]:
    """Words filled into lines no wider than `width`; a word wider than that is shortened."""
    lines: list[str] = []
    for word in text.split():
        if lines and measure(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(_fit(word, width, measure))
    return lines


def grid_geometry(rows: Sequence[Key], cols: Sequence[Key], *, thumb: int, measure: Measure, title: str = "",
                  subtitle: str = "", label_width: int = 240) -> GridGeometry:
    """Lay a grid out in pixels; row labels wider than `label_width` wrap."""
    rows, cols = _levels(rows), _levels(cols)
    widths = tuple(
        min(label_width, int(max(measure(key[level], False) for key in rows))) + 2 * PAD
        for level in range(len(rows[0]) if rows else 0)
    )
    xs, ys = _offsets(cols, thumb), _offsets(rows, thumb)
    left = sum(widths) + PAD
    width = left + (xs[-1] + thumb if xs else 0) + PAD
    if title or subtitle:
        width = max(width, 480)
    heading = [(line, True) for line in _wrap(title, width - 2 * PAD, lambda t: measure(t, True))]
    for paragraph in subtitle.splitlines():
        heading += [(line, False) for line in _wrap(paragraph, width - 2 * PAD, lambda t: measure(t, False))]
    top = (PAD + len(heading) * (TITLE_SIZE + 6) if heading else 0) + PAD
    top += (len(cols[0]) if cols else 0) * (FONT_SIZE + PAD)
    height = top + (ys[-1] + thumb if ys else 0) + PAD
    return GridGeometry(left, top, tuple(xs), tuple(ys), widths, tuple(heading), (width, height))


def thumbnail_grid(
    rows: Sequence[Key],
    cols: Sequence[Key],
    cells: Mapping[tuple[int, int], Path],
    *,
    thumb: int = 160,
    title: str = "",
    subtitle: str = "",
    label_width: int = 240,
    image_format: str = "JPEG",
    on_unreadable: OnUnreadable | None = None,
) -> tuple[bytes, GridGeometry]:
    """Thumbnails on a grid with nested row labels on the left, column labels on top and a heading.

    A cell left out of `cells` stays an empty frame; a file that is not there is a grey 'missing'
    cell; one that cannot be read, or declares more than MAX_PIXELS (a decompression bomb: never
    decoded), is marked 'unreadable' and passed to `on_unreadable` with the reason. Returns the
    encoded image and its layout.
    """
    from PIL import Image, ImageDraw, ImageFont

    font, bold = ImageFont.load_default(size=FONT_SIZE), ImageFont.load_default(size=TITLE_SIZE)
    rows, cols = _levels(rows), _levels(cols)
    geo = grid_geometry(rows, cols, thumb=thumb, measure=lambda t, big: (bold if big else font).getlength(t),
                        title=title, subtitle=subtitle, label_width=label_width)
    image = Image.new("RGB", geo.size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    for i, (text, big) in enumerate(geo.heading):
        draw.text((PAD, PAD + i * (TITLE_SIZE + 6)), text, fill=INK, font=bold if big else font)
    _column_labels(draw, geo, cols, thumb, font)
    _row_labels(draw, geo, rows, thumb, font)
    for r, c in itertools.product(range(len(rows)), range(len(cols))):
        _cell(image, draw, cells.get((r, c)), geo.box(r, c), thumb, font, on_unreadable)
    out = io.BytesIO()
    image.save(out, format=image_format, **({"quality": 88} if image_format == "JPEG" else {}))
    return out.getvalue(), geo


def _column_labels(draw, geo: GridGeometry, cols: Sequence[tuple[str, ...]], thumb: int, font) -> None:
    levels, line = len(cols[0]) if cols else 0, FONT_SIZE + PAD
    for level in range(levels):
        y = geo.top - (levels - level) * line
        for first, last, label in _spans(cols, level):
            x0, x1 = geo.left + geo.xs[first], geo.left + geo.xs[last] + thumb
            text = _fit(str(label), x1 - x0, font.getlength)
            draw.text(((x0 + x1 - font.getlength(text)) / 2, y + 2), text, fill=INK, font=font)
            draw.line([(x0, y + line - 4), (x1, y + line - 4)], fill=RULE)


def _row_labels(draw, geo: GridGeometry, rows: Sequence[tuple[str, ...]], thumb: int, font) -> None:
    x, line = PAD, FONT_SIZE + 3
    for level, width in enumerate(geo.label_widths):
        for first, last, label in _spans(rows, level):
            y0, y1 = geo.top + geo.ys[first], geo.top + geo.ys[last] + thumb
            lines = _wrap(str(label), width - 2 * PAD, font.getlength)
            room = max(1, (y1 - y0) // line)
            if len(lines) > room:
                lines = [*lines[: room - 1], _fit(lines[room - 1] + " \u2026", width - 2 * PAD, font.getlength)]
            top = (y0 + y1 - len(lines) * line) / 2
            for i, text in enumerate(lines):
                draw.text((x, top + i * line), text, fill=INK, font=font)
            draw.line([(x + width - PAD / 2, y0), (x + width - PAD / 2, y1)], fill=RULE)
        x += width


#: The most pixels a picture may declare before it is decoded: 40 megapixels (a 6300 px square) is far
#: above any sample or contact sheet, and far below what a decompression bomb declares.
MAX_PIXELS = 40_000_000
OnUnreadable = Callable[[Path, str], None]  # (file, why) for each picture drawn as 'unreadable'


class UnreadableImage(ValueError):
    """A picture that cannot be shown: not an image, damaged, or too large to decode safely."""


def open_picture(path: Path | io.BytesIO, max_pixels: int = MAX_PIXELS):
    """The picture at `path` decoded as RGB, its size checked before any pixel is decoded.

    Raises FileNotFoundError for a file that is not there and UnreadableImage for anything else (a FIFO,
    a device, a damaged or foreign file, or one declaring more than `max_pixels`).
    """
    import warnings

    from PIL import Image

    try:
        if not isinstance(path, io.BytesIO) and not stat.S_ISREG(os.stat(path).st_mode):
            raise UnreadableImage("not a regular file")  # a FIFO would block the read forever, a device never end
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, before decoding
            with Image.open(path) as picture:
                width, height = picture.size
                if width * height > max_pixels:
                    raise UnreadableImage(f"it declares {width}x{height} pixels, more than the {max_pixels:,} "
                                          "decoded at most")
                return picture.convert("RGB")
    except (FileNotFoundError, UnreadableImage):
        raise
    except (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(str(exc) or type(exc).__name__) from None


def _cell(image, draw, path: Path | None, box: tuple[int, int], thumb: int, font,
          on_unreadable: OnUnreadable | None = None) -> None:
    """One cell: the image shrunk and centred, or a frame (no image), 'missing' or 'unreadable'."""
    from PIL import Image

    corner = (box[0] + thumb - 1, box[1] + thumb - 1)
    if path is None:
        draw.rectangle([box, corner], outline=EMPTY)
        return
    try:
        picture = open_picture(path)
        picture.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
    except FileNotFoundError:
        draw.rectangle([box, corner], fill=EMPTY)
        draw.text((box[0] + PAD, box[1] + PAD), _fit("missing", thumb - 2 * PAD, font.getlength), fill=INK, font=font)
        return
    except UnreadableImage as exc:
        if on_unreadable:
            on_unreadable(Path(path), str(exc))
        draw.rectangle([box, corner], outline=BAD)
        draw.text((box[0] + PAD, box[1] + PAD), _fit("unreadable", thumb - 2 * PAD, font.getlength), fill=BAD,
                  font=font)
        return
    image.paste(picture, (box[0] + (thumb - picture.width) // 2, box[1] + (thumb - picture.height) // 2))


def as_jpeg(png: bytes, max_width: int = 1400) -> bytes:
    """A contact sheet re-encoded as JPEG (and shrunk to `max_width`) so reports stay small.

    Raises UnreadableImage for bytes that are not a picture, or one too large to decode safely.
    """
    from PIL import Image

    image = open_picture(io.BytesIO(png))
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=88)
    return out.getvalue()
