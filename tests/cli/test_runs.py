"""`gaze runs` through click's CliRunner, and the index.html that other commands refresh."""

from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest
import runfactory as rf
from cli_checks import gaze_runner, one_error_line
from click.testing import CliRunner
from runs_folder import SPECS, expected, expected_state, make_runs_folder

from wrapper.cli import main
from wrapper.cli.runs import SORTABLE, index_refreshed, runs_dir_of
from wrapper.reports.index import INDEX
from wrapper.runs import catalog


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Twenty runs started hours before now (the real clock: --since 4h means 4 hours before now)."""
    now = datetime.now(UTC).replace(microsecond=0)
    root = tmp_path_factory.mktemp("runs")
    with ExitStack() as stack:
        make_runs_folder(root, now, stack)
        yield root, now


gaze = gaze_runner()


def listed(result) -> list[str]:
    """The run folders of `gaze runs` table output, in order."""
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == list(catalog.COLUMNS) and set(lines[1]) <= {"-", " "}
    return [line.split()[0] for line in lines[2:]]


def runs_where(now, predicate) -> list[str]:
    return sorted(expected(s, i, now)["run"] for i, s in enumerate(SPECS) if predicate(s))


def test_gaze_runs_lists_every_run_oldest_first(folder):
    root, now = folder
    result = gaze("runs", str(root))
    by_start = sorted(range(len(SPECS)), key=lambda i: -SPECS[i].hours_ago)
    assert listed(result) == [expected(SPECS[i], i, now)["run"] for i in by_start]
    smoke = next(line for line in result.stdout.splitlines() if line.startswith("sd15-smoke/"))
    assert smoke.split()[1:9] == ["sd15-smoke", "-", "-", "0", "succeeded", "4/4", "0.6000", "2m00s"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3 and sum("recipe.json is not valid JSON" in w for w in warnings) == 1


def test_the_runs_folder_defaults_to_the_settings(folder, monkeypatch, tmp_path):
    root, _ = folder
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GAZE_RUNS_DIR", str(root))
    assert len(listed(gaze("runs"))) == 20
    monkeypatch.delenv("GAZE_RUNS_DIR")
    (tmp_path / "gaze.toml").write_text(f'runs_dir = "{root}"\n')
    assert len(listed(gaze("runs"))) == 20


@pytest.mark.parametrize(
    ("args", "predicate"),
    [
        (["--state", "lost"], lambda s: expected_state(s) == "lost"),
        (["--state", "queued", "--state", "running"], lambda s: expected_state(s) in ("queued", "running")),
        (["--state", "failed"], lambda s: expected_state(s) == "failed"),
        (["--recipe", "sdxl-*"], lambda s: s.recipe == "sdxl-standard"),
        (["--recipe", "sd15-smoke", "--recipe", "sd15-uncropped"], lambda s: s.recipe in ("sd15-smoke",
                                                                                          "sd15-uncropped")),
        (["--recipe", "sdxl-standard+crop-flip"], lambda s: s.name == "sdxl-standard+crop-flip"),
        (["--glitch", "high-lr"], lambda s: s.damage != "recipe" and any(g.startswith("high-lr") for g in s.glitches)),
        (["--glitch", "high-lr=3e-4"], lambda s: "high-lr=3e-4" in s.glitches),
        (["--glitch", "crop-flip", "--glitch", "high-lr"], lambda s: {"crop-flip", "high-lr=2e-4"} <= set(s.glitches)),
        (["--since", "4h"], lambda s: s.hours_ago < 4),
        (["--since", "1d"], lambda s: s.hours_ago < 24),
        (["--since", "2d", "--state", "succeeded", "--recipe", "sd15-*"],
         lambda s: s.hours_ago < 48 and expected_state(s) == "succeeded" and s.recipe.startswith("sd15")),
    ],
)
def test_filters(folder, args, predicate):
    root, now = folder
    want = runs_where(now, predicate)
    assert want, "a filter that keeps nothing proves little"
    assert sorted(listed(gaze("runs", str(root), *args))) == want


def test_since_takes_an_iso_time(folder):
    root, now = folder
    since = (now - timedelta(hours=11)).strftime("%Y-%m-%dT%H:%M:%S")  # naive: UTC
    assert sorted(listed(gaze("runs", str(root), "--since", since))) == runs_where(now, lambda s: s.hours_ago <= 11)
    offset = (now - timedelta(hours=11)).astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert sorted(listed(gaze("runs", str(root), "--since", offset))) == runs_where(now, lambda s: s.hours_ago <= 11)


def test_a_filter_that_keeps_nothing_says_so(folder):
    root, _ = folder
    result = gaze("runs", str(root), "--glitch", "no-such-glitch")
    assert result.exit_code == 0 and result.stdout.strip() == f"no runs in {root} match"


@pytest.mark.parametrize("column", SORTABLE)
def test_sort_and_reverse(folder, column):
    root, _ = folder
    rows = json.loads(gaze("runs", str(root), "--json").stdout)
    key = {"steps": "step", "duration": "duration_s"}.get(column, column)
    value = {"glitches": lambda r: ",".join(r["glitches"]) or None, "tweaks": lambda r: ",".join(r["tweaks"]) or None,
             "recipe": lambda r: (r["recipe"], r["name"]),
             "started": lambda r: r["started"] or r["created"]}.get(column, lambda r: r[key])
    for reverse in (False, True):
        present = sorted((r for r in rows if value(r) is not None), key=lambda r: r["run"])
        present = sorted(present, key=value, reverse=reverse)
        missing = sorted(r["run"] for r in rows if value(r) is None)
        args = ["--sort", column] + (["--reverse"] if reverse else [])
        assert listed(gaze("runs", str(root), *args)) == [r["run"] for r in present] + missing, (column, reverse)


def test_sortable_columns_are_the_catalogs():
    assert SORTABLE == catalog.COLUMNS


def test_json_is_the_same_rows(folder):
    root, now = folder
    result = gaze("runs", str(root), "--json", "--sort", "run")
    rows = json.loads(result.stdout)
    assert [r["run"] for r in rows] == sorted(expected(s, i, now)["run"] for i, s in enumerate(SPECS))
    by_run = {r["run"]: r for r in rows}
    for i, spec in enumerate(SPECS):
        want = expected(spec, i, now)
        got = by_run[want["run"]]
        assert got["loss"] == (None if want["loss"] is None else pytest.approx(want["loss"], rel=1e-6))
        if want["state"] == "running":  # still going: its duration grows with the clock
            assert got["duration_s"] >= want["duration_s"]
            want = {k: v for k, v in want.items() if k != "duration_s"}
        assert {k: got[k] for k in want if k != "loss"} == {k: v for k, v in want.items() if k != "loss"}
    assert sum(len(r["warnings"]) for r in rows) == 3
    table = listed(gaze("runs", str(root), "--sort", "run"))
    assert table == [r["run"] for r in rows]
    filtered = json.loads(gaze("runs", str(root), "--json", "--state", "lost").stdout)
    assert [r["state"] for r in filtered] == ["lost"]


def test_html_writes_the_index_of_every_run_whatever_the_filters(folder, tmp_path):
    root, _ = folder
    result = gaze("runs", str(root), "--html", "--state", "lost")
    assert len(listed(result)) == 1
    assert f"wrote {root / INDEX}" in result.stderr
    text = (root / INDEX).read_text()
    assert text.count('type="checkbox"') == 20


def test_mistakes_are_one_line(folder, tmp_path):
    root, _ = folder
    assert "neither a time ago" in one_error_line(gaze("runs", str(root), "--since", "last tuesday"))
    assert "no runs folder" in one_error_line(gaze("runs", str(tmp_path / "nope")))
    bad = gaze("runs", str(root), "--state", "done")
    assert bad.exit_code == 2 and "'done' is not one of" in bad.output
    bad = gaze("runs", str(root), "--sort", "los")
    assert bad.exit_code == 2 and "'los' is not one of" in bad.output


def test_help_has_an_example():
    result = CliRunner().invoke(main, ["runs", "--help"])
    assert result.exit_code == 0 and "Example: gaze runs" in result.output


# ---- the index after other commands ----------------------------------------------------------------------


def test_gaze_report_refreshes_the_index_of_the_settings_runs_folder(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    run = rf.make_run(runs, "sd15-standard", loss=rf.converging(200))
    monkeypatch.setenv("GAZE_RUNS_DIR", str(runs))
    result = gaze("report", str(run), "-q")
    assert result.exit_code == 0, result.output
    page = (runs / INDEX).read_text()
    assert "sd15-standard/20240101T120000Z-a1b2c3/report.html" in page


def test_gaze_report_leaves_other_folders_alone(tmp_path, monkeypatch):
    """A run outside the runs folder: the folder two levels up is not a runs folder, so no index is written."""
    run = rf.make_run(tmp_path / "somewhere", "x", loss=rf.converging(100))
    monkeypatch.setenv("GAZE_RUNS_DIR", str(tmp_path / "runs"))
    assert gaze("report", str(run), "-q").exit_code == 0
    assert not (tmp_path / "somewhere" / INDEX).exists()
    assert runs_dir_of(run) is None
    (tmp_path / "somewhere" / "sweeps").mkdir()  # a folder with sweeps/ is a runs folder
    assert runs_dir_of(run) == (tmp_path / "somewhere").resolve()


def test_an_index_that_cannot_be_written_is_only_a_warning(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    run = rf.make_run(runs, "sd15-standard", loss=rf.converging(200))
    (runs / INDEX).mkdir()  # a folder where the page goes
    monkeypatch.setenv("GAZE_RUNS_DIR", str(runs))
    result = gaze("report", str(run), "-q")
    assert result.exit_code == 0, result.output
    assert f"warning: could not write {runs / INDEX}: {runs / INDEX} is a folder" in result.stderr
    assert (run / "report.html").is_file()


def test_index_refreshed_after_success_and_exit_but_not_ctrl_c(tmp_path):
    rf.make_run(tmp_path, "a", loss=[0.3] * 10)
    with index_refreshed(tmp_path):
        pass
    assert (tmp_path / INDEX).is_file()
    (tmp_path / INDEX).unlink()
    with pytest.raises(SystemExit), index_refreshed(tmp_path):
        raise SystemExit(1)  # a failed run: the page shows it
    assert (tmp_path / INDEX).is_file()
    (tmp_path / INDEX).unlink()
    with pytest.raises(KeyboardInterrupt), index_refreshed(tmp_path):
        raise KeyboardInterrupt
    assert not (tmp_path / INDEX).exists()
    with index_refreshed(tmp_path / "not made yet", None):
        pass  # nothing to list, nothing written
    assert not (tmp_path / "not made yet").exists()
