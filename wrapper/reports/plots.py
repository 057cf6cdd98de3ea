"""Pictures for reports: loss, learning-rate and validation plots (PNG) and sample grids (JPEG).

Every function returns encoded image bytes, or None when the data for that picture is absent.
Matplotlib is used through `Figure` objects (no pyplot state), so plotting is safe anywhere.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
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


# ---- sample grids --------------------------------------------------------------------------------


def pick_columns(count: int, limit: int) -> list[int]:
    """Indices of at most `limit` of `count` columns, evenly spread, first and last included."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def sample_grid(
    rows: Sequence[str],
    cols: Sequence[str],
    cells: Mapping[tuple[int, int], Path],
    *,
    thumb: int = 160,
    label_width: int = 200,
) -> bytes:
    """A JPEG grid: row labels on the left, column labels on top, one thumbnail per cell."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    pad, header = 6, 24
    width = label_width + len(cols) * (thumb + pad) + pad
    height = header + len(rows) * (thumb + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for c, text in enumerate(cols):
        x = label_width + c * (thumb + pad) + pad + (thumb - draw.textlength(text, font=font)) / 2
        draw.text((max(x, 0), 5), text, fill="black", font=font)
    wrap = max(8, label_width // 8)
    for r, text in enumerate(rows):
        y = header + r * (thumb + pad)
        draw.multiline_text((pad, y + 4), "\n".join(textwrap.wrap(text, wrap)[:8]), fill="black", font=font)
        for c in range(len(cols)):
            x = label_width + c * (thumb + pad) + pad
            path = cells.get((r, c))
            if path is None:
                draw.rectangle((x, y, x + thumb - 1, y + thumb - 1), outline="#bbbbbb")
                draw.text((x + thumb // 2 - 6, y + thumb // 2 - 8), "-", fill="#888888", font=font)
                continue
            try:
                with Image.open(path) as img:
                    img = img.convert("RGB")
                    img.thumbnail((thumb, thumb))
            except OSError:
                draw.rectangle((x, y, x + thumb - 1, y + thumb - 1), outline="red")
                draw.text((x + 4, y + 4), "unreadable", fill="red", font=font)
                continue
            sheet.paste(img, (x + (thumb - img.width) // 2, y + (thumb - img.height) // 2))
    out = io.BytesIO()
    sheet.save(out, format="JPEG", quality=88)
    return out.getvalue()


def as_jpeg(png: bytes, max_width: int = 1400) -> bytes:
    """A contact sheet re-encoded as JPEG (and shrunk to `max_width`) so reports stay small."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image = image.convert("RGB")
        if image.width > max_width:
            image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=88)
        return out.getvalue()
