"""Reports and comparisons written from run folders built with real event files and PNGs."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
import runfactory as rf
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from wrapper.cli.reports import COMMANDS
from wrapper.cli.reports import compare as compare_command
from wrapper.cli.reports import report as report_command
from wrapper.errors import RunError
from wrapper.kohya import samples
from wrapper.reports import compare
from wrapper.reports import run as report
from wrapper.reports.pages import Table, to_markdown
from wrapper.runs import layout

N = 600


@pytest.fixture
def full_run(tmp_path):
    return rf.make_run(
        tmp_path,
        "sd15-standard+high-lr=3e-4",
        loss=rf.spiking(N, at=(200,)),
        modifiers=["high-lr=3e-4"],
        glitches=["high-lr=3e-4"],
        sample_steps=["e000000", 200, 400, 600],
        steps_per_epoch=200,
        validation=lambda s: 0.15 - 0.02 * s / N,
        validate_every=100,
    )


def test_report_files_and_content(full_run):
    paths = report.write_report(full_run).paths
    names = [p.relative_to(full_run).as_posix() for p in paths]
    assert names == [
        "report.html",
        "report.md",
        "plots/loss.png",
        "plots/lr.png",
        "plots/validation.png",
        "plots/samples.jpg",
    ]
    assert all(p.stat().st_size > 1000 for p in paths)
    page = (full_run / "report.html").read_text()
    assert page.count('src="data:image/') == 4 and not re.search(r'(src|href)="(?!data:)', page)
    assert "<th>Metric</th><th>Status</th><th>Notes</th>" in page
    assert "deliberate glitch" in page and "Deliberate glitches: high-lr=3e-4" in page
    assert "Rule: robust z-score" in page and "1 spike" in page
    md = (full_run / "report.md").read_text()
    assert "| Metric | Status | Notes |" in md and "![Training loss](plots/loss.png)" in md
    for link in re.findall(r"\]\((plots/[^)]+)\)", md):
        assert (full_run / link).is_file()


def test_report_of_a_run_that_has_barely_started(tmp_path):
    run = rf.make_run(tmp_path, loss=None, state="running")
    with layout.run_lock(run, purpose="training"):  # its gaze process is alive
        report.write_report(run)
    page = (run / "report.html").read_text()
    assert "This run is running" in page and "No scalars in the logs" in page
    assert "No sample images" in page and "Training loss: not in the logs." in page
    assert "not measurable without a validation split" in page
    report.write_report(run)  # and once its gaze process is gone, the report says so
    assert "This run is lost: the gaze process that ran it is gone" in (run / "report.html").read_text()


def test_report_lists_damage_in_the_logs(tmp_path):
    run = rf.make_run(tmp_path, loss=rf.converging(N), state="failed")
    (events,) = (run / "logs").rglob("events.out.tfevents.*")
    events.write_bytes(events.read_bytes()[:-7])
    report.write_report(run)
    page = (run / "report.html").read_text()
    assert "This run failed (failure_class trainer-crash, exit_code 1)" in page
    assert "ends inside a record" in page and str(events) in page


def test_sample_grid_uses_prompt_order_and_points(full_run):
    view = report.load_run(full_run)
    assert view.prompts == ["a photo of sks shape on a table", "sks shape in the snow"]
    assert [s.label for s in view.samples[::2]] == ["start", "step 200", "step 400", "step 600"]


def test_recipe_folder_means_its_newest_run(tmp_path):
    rf.make_run(tmp_path, stamp="20240101T120000Z-aaaaaa")
    newest = rf.make_run(tmp_path, stamp="20240102T120000Z-bbbbbb")
    assert layout.resolve_run_dir(tmp_path / "sd15-standard") == newest
    with pytest.raises(RunError, match="did you mean 'sd15-standard'"):
        layout.resolve_run_dir(tmp_path / "sd15-standrd")
    with pytest.raises(RunError, match="not a run folder"):
        layout.resolve_run_dir(tmp_path)


def test_comparison(tmp_path, full_run):
    base = rf.make_run(tmp_path, loss=rf.converging(N), sample_steps=[200, 400])
    again = rf.make_run(tmp_path, loss=rf.converging(N, seed=3), stamp="20240103T120000Z-cccccc")
    paths = compare.write_comparison([base, full_run, again], tmp_path / "cmp")
    assert [p.name for p in paths] == [
        "comparison.html",
        "comparison.md",
        "loss.png",
        "validation.png",
        "samples-p00.jpg",
        "samples-p01.jpg",
    ]
    page = (tmp_path / "cmp" / "comparison.html").read_text()
    labels = [
        "sd15-standard (20240101T120000Z-a1b2c3)",
        "sd15-standard+high-lr=3e-4",
        "sd15-standard (20240103T120000Z-cccccc)",
    ]
    assert all(label in page for label in labels)
    diff = dict(compare.differing_parameters(compare.load_runs([base, full_run])))
    assert diff == {"modifiers": ["(none)", "high-lr=3e-4"]}  # the factory gives both the same values
    assert page.count('src="data:image/') == 4
    assert "Parameters that differ" in page and "1 spike" in page


def test_differing_parameters_only(tmp_path):
    a = rf.make_run(tmp_path, "a", values={"network": {"dim": 32, "alpha": 16}, "seed": 1})
    b = rf.make_run(tmp_path, "b", values={"network": {"dim": 64, "alpha": 16}})
    assert compare.differing_parameters(compare.load_runs([a, b])) == [
        ("network.dim", ["32", "64"]),
        ("seed", ["1", "(absent)"]),
    ]


def test_cli_report_and_compare(tmp_path, full_run):
    other = rf.make_run(tmp_path, loss=rf.converging(N))
    runner = CliRunner()
    result = runner.invoke(report_command, [str(full_run), "--smoothing", "0.9"])
    assert result.exit_code == 0, result.output
    assert f"wrote {full_run / 'report.html'} (and report.md, 4 images)" in result.output
    assert re.search(r"Spikes\s+1 spike", result.output)
    assert "weight 0.9" in (full_run / "report.md").read_text()
    result = runner.invoke(compare_command, [str(full_run), str(other), "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "comparison.html").is_file()
    result = runner.invoke(compare_command, [str(other)])
    assert isinstance(result.exception, RunError) and "at least two runs" in str(result.exception)
    assert runner.invoke(report_command, [str(full_run), "--smoothing", "1"]).exit_code == 2


def test_every_command_has_help_with_an_example():
    for command in COMMANDS:
        lines = inspect.cleandoc(command.help).splitlines()
        assert lines[0].endswith(".") and lines[2].startswith("Example: gaze ")


@given(
    name=st.text("abcXYZ019_-.", min_size=1, max_size=20),
    when=st.one_of(st.integers(0, 10**7), st.integers(0, 999).map(lambda e: f"e{e:06d}")),
    prompt=st.integers(0, 150),
    seed=st.one_of(st.none(), st.integers(0, 2**32)),
)
def test_sample_names_parse(name, when, prompt, seed):
    stem = f"{name}_{when if isinstance(when, str) else f'{when:06d}'}_{prompt:02d}_20240101123456"
    sample = samples.parse_sample_name(f"{stem}{'' if seed is None else f'_{seed}'}.png")
    assert sample is not None and sample.prompt == prompt and sample.seed == seed
    if isinstance(when, int):
        assert sample.point == (1, when)
    else:
        assert sample.point == ((0, 0) if when == "e000000" else (2, int(when[1:])))


def test_prompt_files(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("# skip\n\nfirst --n bad --w 512\n #indented counts\nsecond\x0cpage\r\nthird\n")
    # the trainer ends lines at \n and \r only: a form feed inside a prompt does not shift the prompts after it
    assert samples.read_sample_prompts(txt) == ["first", "#indented counts", "second\x0cpage", "third"]
    js = tmp_path / "p.json"
    js.write_text(json.dumps(["a --d 1", {"prompt": "b", "seed": 2}]))
    assert samples.read_sample_prompts(js) == ["a", "b"]
    assert samples.read_sample_prompts(tmp_path / "missing.txt") == []


@given(st.lists(st.text(max_size=12), min_size=2, max_size=4))
def test_markdown_tables_keep_their_columns(cells):
    text = to_markdown("t", [Table([f"h{i}" for i in range(len(cells))], [cells])])
    row = text.strip().splitlines()[-1]
    assert len(re.split(r"(?<!\\)\|", row)) == len(cells) + 2


def test_comparison_tolerates_runs_without_logs_or_samples(tmp_path, monkeypatch):
    empty = rf.make_run(tmp_path, "starting", loss=None, state="queued")
    done = rf.make_run(tmp_path, loss=rf.converging(N))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(compare_command, [str(empty), str(done)])
    assert result.exit_code == 0, result.output
    (page,) = list(Path("comparisons").glob("*T*Z-*/comparison.html"))
    text = page.read_text()
    assert "No sample images in any run." in text and "Validation loss: none logged." in text
    assert "<td>starting</td><td>" in text and "no data" in text


def test_report_links_generation_pages_and_shows_their_sheets(tmp_path):
    from PIL import Image

    run = rf.make_run(tmp_path, loss=rf.converging(50))
    folder = run / "generations" / "20260101T000000Z-abcdef"
    (folder / "sheets").mkdir(parents=True)
    Image.new("RGB", (2000, 500), (200, 30, 30)).save(folder / "sheets" / "p01.png")
    (folder / "generation.html").write_text("<html></html>")
    index = {"state": "succeeded", "created": "2026-01-01T00:00:00Z", "images": [{}] * 8,
             "sheets": [{"file": "sheets/p01.png"}]}
    (folder / "index.json").write_text(json.dumps(index))
    report.write_report(run)
    html = (run / "report.html").read_text()
    assert '<a href="generations/20260101T000000Z-abcdef/generation.html">' in html
    assert "8 images, succeeded" in html and 'alt="contact sheet p01"' in html
    with Image.open(run / "plots" / "generation-20260101T000000Z-abcdef-p01.jpg") as shrunk:
        assert shrunk.size == (1400, 350)
    assert "[20260101T000000Z-abcdef: 8 images" in (run / "report.md").read_text()
