"""Contact sheets: axis placement, layout, rendering (every image in its labelled cell) and the page."""

from __future__ import annotations

import itertools

import pytest
from PIL import Image

from wrapper.errors import ConfigError
from wrapper.generation.sheets import axis_label, layout, render_sheet, sheet_axes, write_page, write_sheets
from wrapper.reports.plots import EMPTY
from wrapper.runs.layout import GENERATION_PAGE


def entries(**axes):
    """Index entries for every combination of the given axis values (others fixed)."""
    base = {
        "source": "final",
        "sampler": "dpm++2m",
        "steps": 20,
        "cfg": 7.0,
        "negative": "on",
        "weight": 1.0,
        "seed": 1,
        "prompt_id": "p01",
        "width": 64,
        "height": 64,
    }
    out = []
    for values in itertools.product(*axes.values()):
        entry = {**base, **dict(zip(axes, values, strict=True))}
        name = "-".join(str(v) for v in values) or "one"
        entry["file"] = f"images/{name}.png"
        out.append(entry)
    return out


def test_default_axes_keep_only_varying_ones():
    rows, cols = sheet_axes(
        entries(sampler=["euler", "dpm++2m"], steps=[10, 20], cfg=[3.0, 7.0], negative=["on", "off"])
    )
    assert (rows, cols) == (["steps", "cfg"], ["sampler", "negative"])


def test_checkpoints_become_the_innermost_column_and_seeds_rows():
    rows, cols = sheet_axes(entries(source=["step1000", "final"], negative=["on", "off"], seed=[1, 2]))
    assert (rows, cols) == (["seed"], ["negative", "source"])


def test_axes_left_out_go_to_the_side_not_given():
    e = entries(sampler=["euler", "ddim"], steps=[10, 20], weight=[0.6, 1.0])
    assert sheet_axes(e, rows=["steps"]) == (["steps"], ["sampler", "weight"])
    assert sheet_axes(e, cols=["steps"]) == (["sampler", "weight"], ["steps"])
    assert sheet_axes(e, rows=["weight"], cols=["steps"]) == (["weight", "sampler"], ["steps"])


@pytest.mark.parametrize(
    ("rows", "cols", "message"),
    [(["stepz"], [], "did you mean 'steps'"), (["cfg"], ["cfg"], "both a row and a column")],
)
def test_bad_sheet_axes(rows, cols, message):
    with pytest.raises(ConfigError, match=message):
        sheet_axes(entries(cfg=[3.0, 7.0]), rows, cols)


def test_layout_places_every_entry_once():
    e = entries(sampler=["euler", "dpm++2m"], steps=[10, 20, 40], negative=["on", "off"])
    sheet = layout(e, ["steps"], ["sampler", "negative"])
    assert sheet.row_keys == ((10,), (20,), (40,))
    assert sheet.col_keys == (("euler", "on"), ("euler", "off"), ("dpm++2m", "on"), ("dpm++2m", "off"))
    assert len(sheet.cells) == 12
    assert sheet.cells[(2, 1)]["steps"] == 40 and sheet.cells[(2, 1)]["negative"] == "off"
    assert sheet.fixed == {"source": "final", "base": "default", "cfg": 7.0, "weight": 1.0, "seed": 1}


def test_layout_refuses_an_axis_left_out():
    with pytest.raises(ConfigError, match="two images fall into one sheet cell"):
        layout(entries(steps=[1, 2], cfg=[3.0, 7.0]), ["steps"], [])


def test_labels():
    assert [
        axis_label(a, v)
        for a, v in [
            ("steps", 20),
            ("cfg", 7.0),
            ("negative", "off"),
            ("weight", 0.6),
            ("seed", 2),
            ("sampler", "euler"),
        ]
    ] == ["20 steps", "CFG 7", "neg off", "LoRA x0.6", "seed 2", "euler"]


def colour(i: int) -> tuple[int, int, int]:
    return (40 + 50 * (i % 4), 30 * (i // 4) % 256, 200 - 20 * i % 200)


def test_rendered_sheet_puts_each_image_in_its_cell(tmp_path):
    e = entries(sampler=["euler", "dpm++2m"], steps=[2, 4], cfg=[3.0, 7.0], negative=["on", "off"])
    for i, entry in enumerate(e):
        path = tmp_path / entry["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), colour(i)).save(path)
    (tmp_path / e[-1]["file"]).unlink()  # one missing image shows as a grey cell
    sheet = layout(e, ["steps", "cfg"], ["sampler", "negative"])
    geo = render_sheet(sheet, tmp_path, tmp_path / "sheet.png", title="p01: a long prompt " * 8, subtitle="s", thumb=48)
    with Image.open(tmp_path / "sheet.png") as picture:
        assert picture.size == geo.size
        for (r, c), entry in sheet.cells.items():
            x, y = geo.box(r, c)
            expected = colour(e.index(entry)) if entry is not e[-1] else EMPTY
            assert picture.getpixel((x + 40, y + 40)) == expected


def test_write_sheets_and_page(tmp_path):
    e = entries(cfg=[3.0, 7.0], negative=["on", "off"])
    for entry in e:
        (tmp_path / entry["file"]).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), (9, 9, 9)).save(tmp_path / entry["file"])
    index = {
        "state": "succeeded",
        "created": "2025-01-01T00:00:00Z",
        "prompt_file": "p.txt",
        "seeds": [1],
        "size": 64,
        "precision": "fp32",
        "grid": {"cfg": [3.0, 7.0], "negative": ["on", "off"]},
        "sources": [{"label": "final", "lora": "/r/lora.safetensors", "model": "/m"}],
        "prompts": [{"id": "p01", "prompt": "a <b>bold</b> coat", "negative_prompt": "blurry"}],
        "images": e,
        "processes": [{"duration_s": 8.0}],
    }
    index["sheets"] = write_sheets(tmp_path, index)
    assert index["sheets"] == [
        {
            "prompt_id": "p01",
            "file": "sheets/p01.png",
            "rows": ["cfg"],
            "cols": ["negative"],
            "row_count": 2,
            "col_count": 2,
            "size": index["sheets"][0]["size"],
        }
    ]
    path = write_page(tmp_path, index)
    assert path == tmp_path / GENERATION_PAGE
    page = path.read_text()
    assert page.count("data:image/png;base64,") == 1  # the one sheet, embedded
    assert "a &lt;b&gt;bold&lt;/b&gt; coat" in page and "<b>bold" not in page
    assert "negative prompt: blurry" in page and "rows: cfg; columns: negative" in page
    assert all(f'<a href="{entry["file"]}">' in page for entry in e)  # the index of every image
    assert "2.0 s per image" in page and "grid: cfg" in page and "3, 7" in page and "/r/lora.safetensors" in page
