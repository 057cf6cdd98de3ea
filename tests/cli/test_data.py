"""`gaze prep` and `gaze audit` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest_data import photo, write_image
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from wrapper.cli import data
from wrapper.dataset import images, prep
from wrapper.errors import DatasetError


@pytest.fixture
def source(tmp_path: Path) -> Path:
    write_image(tmp_path / "src" / "p.jpg", photo((120, 160)))
    write_image(tmp_path / "src" / "l.jpg", photo((160, 120)), caption="red " * 100)
    return tmp_path / "src"


def test_prep_prints_the_folder_and_reuses_it(source, tmp_path):
    args = [str(source), "--op", "crop-orientation", "--portrait", "60x90", "--landscape", "90x60"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--op", "jpeg-inject", "--jpeg-fraction", "0.5"]
    first = CliRunner().invoke(data.prep, args)
    assert first.exit_code == 0, first.output
    folder = Path(first.stdout.strip().splitlines()[-1])
    assert folder.parent == tmp_path / "cache" and "prepared 2 images" in first.stderr
    assert len(list(folder.glob("*.jpg"))) == 1 and len(list(folder.glob("*.webp"))) == 1
    again = CliRunner().invoke(data.prep, args)
    assert again.exit_code == 0 and "reused" in again.stderr and again.stdout == first.stdout


def test_prep_stretch_and_option_errors(source, tmp_path):
    out = tmp_path / "stretched"
    result = CliRunner().invoke(data.prep, [str(source), "--op", "stretch", "--size", "48", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {Image.open(p).size for p in out.glob("*.webp")} == {(48, 48)}
    both = CliRunner().invoke(data.prep, [str(source), "--op", "stretch", "--op", "uncropped", "--out", str(out)])
    assert isinstance(both.exception, DatasetError)
    bad = CliRunner().invoke(data.prep, [str(source), "--op", "stretch", "--size", "big"])
    assert bad.exit_code == 2 and "not a size" in bad.output
    colour = CliRunner().invoke(data.prep, [str(source), "--op", "uncropped", "--background", "teal-ish"])
    assert colour.exit_code == 2 and "not a colour" in colour.output


def test_audit_table_json_and_exit_status(source, tmp_path):
    ok = CliRunner().invoke(data.audit, [str(source), "--resolution", "512"])
    assert ok.exit_code == 0, ok.output
    assert "captions over 75 tokens (1)" in ok.stdout and "max_token_length needed: 150" in ok.stdout
    rows = CliRunner().invoke(data.audit, [str(source), "--resolution", "512", "--images"])
    assert "160x120     576x448     100  l.jpg (upscaled)" in rows.stdout
    report = tmp_path / "report.json"
    as_json = CliRunner().invoke(data.audit, [str(source), "--json", "--report", str(report)])
    assert json.loads(as_json.stdout)["required_max_token_length"] == 150
    assert json.loads(report.read_text(encoding="utf-8"))["max_tokens"] == 100
    (source / "p.txt").unlink()
    bad = CliRunner().invoke(data.audit, [str(source)])
    assert isinstance(bad.exception, DatasetError) and "without a caption: p.jpg" in bad.stdout


def test_every_command_has_help_with_an_example():
    for command in data.COMMANDS:
        text = command.help or ""
        assert text.split("\n")[0].rstrip(".") and "Example: gaze " + command.name in text


def test_choices_agree_with_the_library():
    assert data.OPERATIONS == prep.OPERATIONS
    assert data.FORMATS == images.FORMATS


@given(st.integers(1, 20000), st.integers(1, 20000))
def test_parse_size(w, h):
    assert data.parse_size(None, None, f"{w}x{h}") == (w, h)
    assert data.parse_size(None, None, f" {w} , {h} ") == (w, h)
    assert data.parse_size(None, None, str(w)) == (w, w)


@given(st.text(max_size=12))
def test_parse_size_rejects_junk_cleanly(text):
    try:
        w, h = data.parse_size(None, None, text)
    except click.BadParameter:
        return
    assert w > 0 and h > 0


def test_dataset_from_the_settings(source, tmp_path, monkeypatch):
    monkeypatch.setenv("GAZE_SETTINGS", str(tmp_path / "none.toml"))
    monkeypatch.setenv("GAZE_DATASET", str(source))
    ok = CliRunner().invoke(data.audit, [])
    assert ok.exit_code == 0 and f"audit of {source}" in ok.stdout
    monkeypatch.delenv("GAZE_DATASET")
    missing = CliRunner().invoke(data.prep, ["--op", "uncropped"])
    assert isinstance(missing.exception, DatasetError) and "no dataset given" in str(missing.exception)
