"""The one thumbnail grid: layout of nested labels, wrapping, and every cell where the layout says."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from wrapper.reports.plots import BACKGROUND, EMPTY, PAD, _spans, _wrap, grid_geometry, thumbnail_grid


def width(text: str, is_title: bool = False) -> float:
    return 7.0 * len(text)


def test_spans_group_outer_levels():
    keys = [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert _spans(keys, 0) == [(0, 1, "a"), (2, 3, "b")]
    assert _spans(keys, 1) == [(0, 0, 1), (1, 1, 2), (2, 2, 1), (3, 3, 2)]


def test_wrap_fills_lines_and_shortens_a_word_too_long():
    assert _wrap("a photo of a coat", 70, width) == ["a photo of", "a coat"]
    assert _wrap("supercalifragilistic", 70, width) == ["supercali\u2026"]  # 10 characters, 70 px
    assert _wrap("", 70, width) == []


def test_geometry_groups_cells_and_caps_label_columns():
    rows = [("20 steps", "CFG 3"), ("20 steps", "CFG 7"), ("40 steps", "CFG 3")]
    geo = grid_geometry(rows, ["euler", "dpm++2m"], thumb=50, measure=width, title="p01: a coat", label_width=40)
    assert geo.ys == (0, 52, 112)  # 2 px inside a group, 10 between groups
    assert geo.xs == (0, 52)
    assert geo.label_widths == (40 + 2 * PAD, 35 + 2 * PAD)  # "20 steps" is 56 px wide: capped, it wraps
    assert geo.heading == (("p01: a coat", True),)
    assert geo.size[0] == 480  # room for the heading
    assert geo.box(2, 1) == (geo.left + 52, geo.top + 112)


def test_single_labels_and_every_kind_of_cell(tmp_path):
    Image.new("RGB", (40, 20), (200, 30, 30)).save(tmp_path / "wide.png")
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    cells = {(0, 0): tmp_path / "wide.png", (0, 1): tmp_path / "gone.png", (1, 0): tmp_path / "broken.png"}
    data, geo = thumbnail_grid(["a prompt", "another prompt"], ["start", "step 200"], cells, thumb=40,
                               image_format="PNG")
    with Image.open(io.BytesIO(data)) as picture:
        assert picture.format == "PNG" and picture.size == geo.size
        x, y = geo.box(0, 0)
        assert picture.getpixel((x + 20, y + 20)) == (200, 30, 30)  # centred: 40x20 sits in rows 10..29
        assert picture.getpixel((x + 20, y + 5)) == BACKGROUND
        x, y = geo.box(0, 1)
        assert picture.getpixel((x + 35, y + 35)) == EMPTY  # a file that is not there: a grey cell
        x, y = geo.box(1, 0)
        assert picture.getpixel((x, y + 35)) != BACKGROUND  # unreadable: a red frame
        x, y = geo.box(1, 1)
        assert picture.getpixel((x, y + 20)) == EMPTY and picture.getpixel((x + 20, y + 20)) == BACKGROUND


def test_jpeg_by_default():
    data, geo = thumbnail_grid(["p"], ["start"], {}, thumb=32)
    with Image.open(io.BytesIO(data)) as picture:
        assert picture.format == "JPEG" and picture.size == geo.size


def test_pictures_too_large_to_decode_are_unreadable_cells_with_a_reason(tmp_path):
    from wrapper.reports.plots import BAD, MAX_PIXELS, UnreadableImage, as_jpeg, open_picture

    Image.new("1", (MAX_PIXELS // 1000 + 1, 1000)).save(tmp_path / "huge.png")  # one column too many, 1 bit each
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    seen: list[tuple[str, str]] = []
    data, geo = thumbnail_grid(["p"], ["a", "b"], {(0, 0): tmp_path / "huge.png", (0, 1): tmp_path / "broken.png"},
                               thumb=40, image_format="PNG", on_unreadable=lambda p, why: seen.append((p.name, why)))
    assert [name for name, _ in seen] == ["huge.png", "broken.png"]
    assert f"declares {MAX_PIXELS // 1000 + 1}x1000 pixels, more than the {MAX_PIXELS:,}" in seen[0][1]
    with Image.open(io.BytesIO(data)) as picture:
        x, y = geo.box(0, 0)
        assert picture.getpixel((x, y + 20)) == BAD  # the red frame of an unreadable cell
    with pytest.raises(UnreadableImage, match="declares"):
        as_jpeg((tmp_path / "huge.png").read_bytes())
    Image.new("RGB", (40, 20)).save(tmp_path / "small.png")
    assert open_picture(tmp_path / "small.png").size == (40, 20)
    with pytest.raises(UnreadableImage, match="declares 40x20 pixels"):
        open_picture(tmp_path / "small.png", max_pixels=799)
