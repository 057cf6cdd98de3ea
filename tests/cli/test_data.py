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

from wrapper.cli import data, main
from wrapper.dataset import images, prep
from wrapper.errors import DatasetError


@pytest.fixture
def source(tmp_path: Path) -> Path:
    write_image(tmp_path / "src" / "p.jpg", photo((120, 160)))
    write_image(tmp_path / "src" / "l.jpg", photo((160, 120)), caption="red " * 100)
    return tmp_path / "src"


def test_prep_prints_the_folder_and_reuses_it(source, tmp_path):
    args = [str(source), "--op", "crop-orientation", "--portrait", "64x96", "--landscape", "96x64"]
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
    result = CliRunner().invoke(data.prep, [str(source), "--op", "stretch", "--size", "64", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {Image.open(p).size for p in out.glob("*.webp")} == {(64, 64)}
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


@given(st.integers(64, 8192), st.integers(64, 8192))
def test_parse_size(w, h):
    assert data.parse_size(None, None, f"{w}x{h}") == (w, h)
    assert data.parse_size(None, None, f" {w} , {h} ") == (w, h)
    assert data.parse_size(None, None, str(w)) == (w, w)


@given(st.integers(0, 10**30).filter(lambda v: not 64 <= v <= 8192), st.integers(64, 8192))
def test_parse_size_bounds_each_side(bad, good):
    for text in (f"{bad}x{good}", f"{good}x{bad}", str(bad)):
        with pytest.raises(click.BadParameter, match="each side must be 64..8192 px"):
            data.parse_size(None, None, text)


def test_size_bounds_agree_with_the_library_and_are_in_the_help(source, tmp_path):
    assert data.SIDES == (images.MIN_SIDE, images.MAX_SIDE)
    for option in ("--size", "--portrait", "--landscape", "--square"):
        huge = CliRunner().invoke(data.prep, [str(source), "--op", "stretch", option, "100000x100000"])
        assert huge.exit_code == 2 and "each side must be 64..8192 px" in huge.output, option
    assert not (tmp_path / "cache").exists()
    text = CliRunner().invoke(data.prep, ["--help"]).output
    assert text.count("64..8192 px") >= 4
    assert "64..8192 px" in CliRunner().invoke(data.audit, ["--help"]).output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--bucket-reso-steps", "0"], "bucket_reso_steps = 0: expected a whole number of pixels >= 1"),
        (["--bucket-reso-steps", "-64"], "bucket_reso_steps = -64: expected a whole number of pixels >= 1"),
        (["--min-bucket-reso", "2048"], "min_bucket_reso = 2048 is above max_bucket_reso = 1024"),
        (["--resolution", "1216"], "resolution 1216x1216 is larger than max_bucket_reso = 1024"),
        (["--resolution", "832x1216", "--max-bucket-reso", "1024"], "resolution 832x1216 is larger than"),
    ],
)
def test_audit_options_out_of_range_are_one_line_before_scanning(source, monkeypatch, args, expected):
    from wrapper.dataset import audit as audit_module

    monkeypatch.setattr(audit_module, "scan", lambda *a, **k: pytest.fail("scanned before checking the options"))
    result = CliRunner().invoke(main, ["audit", str(source), *args])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"error: {expected}")


@given(st.text(max_size=12))
def test_parse_size_rejects_junk_cleanly(text):
    try:
        w, h = data.parse_size(None, None, text)
    except click.BadParameter:
        return
    assert w > 0 and h > 0


def test_dataset_from_the_settings(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no gaze.toml here: settings come from the environment
    monkeypatch.setenv("GAZE_DATASET", str(source))
    ok = CliRunner().invoke(data.audit, [])
    assert ok.exit_code == 0 and f"audit of {source}" in ok.stdout
    monkeypatch.delenv("GAZE_DATASET")
    missing = CliRunner().invoke(data.prep, ["--op", "uncropped"])
    assert isinstance(missing.exception, DatasetError) and "no dataset given" in str(missing.exception)
