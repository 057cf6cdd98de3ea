"""Every run of a runs folder as rows: the columns, filters, sorting, lenient reading and sweeps."""

from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest
import runfactory as rf
from runs_folder import (
    SPECS,
    SWEEP_BROKEN,
    SWEEP_QUEUE,
    SWEEP_REPORTED,
    expected,
    expected_state,
    make_runs_folder,
    smoothed_end,
)

from wrapper.errors import GazeError, RunError
from wrapper.runs import catalog as cat
from wrapper.runs import layout

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    with ExitStack() as stack:
        made = make_runs_folder(root, NOW, stack)
        yield root, made


def runs_of(rows) -> list[str]:
    return [r.run for r in rows]


def expected_runs(indices) -> list[str]:
    return [expected(SPECS[i], i, NOW)["run"] for i in indices]


def test_every_run_is_a_row_with_its_columns(folder):
    root, _ = folder
    rows = {r.run: cat.as_json(r) for r in cat.catalog(root, now=NOW)}
    assert len(rows) == len(SPECS) == 20
    for i, spec in enumerate(SPECS):
        want = expected(spec, i, NOW)
        got = rows[want["run"]]
        assert got["loss"] == (None if want["loss"] is None else pytest.approx(want["loss"], rel=1e-6)), want["run"]
        assert {k: got[k] for k in want if k != "loss"} == {k: v for k, v in want.items() if k != "loss"}
        assert got["name"] == spec.name
        assert got["path"] == str(root / want["run"])


def test_damaged_run_folders_are_rows_with_warnings(folder):
    root, _ = folder
    rows = {r.run: r for r in cat.catalog(root, now=NOW)}
    for i, spec in enumerate(SPECS):
        row = rows[expected(spec, i, NOW)["run"]]
        if spec.damage == "recipe":
            assert len(row.warnings) == 1 and "recipe.json is not valid JSON" in row.warnings[0]
        elif spec.damage == "status":
            assert any("status.json: key 'state' is \"exploded\"" in w for w in row.warnings)
            assert any("key 'started_at' is 5" in w for w in row.warnings)
        else:
            assert row.warnings == (), row.run


def test_more_damage_never_raises(tmp_path):
    """A status.json that is a folder, a placement.json that is not JSON on a queued run, a truncated event
    file, a run without status.json: each is a row with what can be read and the reason."""
    a = rf.make_run(tmp_path, "a", stamp="20260101T000000Z-000001", loss=[0.5] * 50)
    (a / "status.json").unlink()
    (a / "status.json").mkdir()
    b = rf.make_run(tmp_path, "b", stamp="20260101T000000Z-000002", state="queued")
    (b / "placement.json").write_text("{")
    c = rf.make_run(tmp_path, "c", stamp="20260101T000000Z-000003", loss=[0.5] * 50)
    event = next((c / "logs").rglob("events.out.tfevents.*"))
    event.write_bytes(event.read_bytes()[:-1000])
    d = rf.make_run(tmp_path, "d", stamp="20260101T000000Z-000004")
    (d / "status.json").unlink()
    (d / "recipe.json").write_text(json.dumps({"name": "d", "glitches": "high-lr", "recipe": []}))
    rows = {r.run.split("/")[0]: r for r in cat.catalog(tmp_path)}
    assert rows["a"].state is None and "is not a file" in rows["a"].warnings[0] and rows["a"].step == 50
    assert rows["b"].state == "queued" and "cannot tell whether it is lost" in rows["b"].warnings[-1]
    assert rows["c"].state == "succeeded" and rows["c"].step is not None and rows["c"].step < 50
    assert any(str(event) in w for w in rows["c"].warnings)
    assert rows["d"].glitches == () and "key 'glitches'" in rows["d"].warnings[0]
    assert any("status.json is missing" in w for w in rows["d"].warnings)
    assert all(cat.format_rows([r]) for r in rows.values())


def test_default_order_is_by_start_oldest_first_and_reverse_flips_it(folder):
    root, _ = folder
    by_start = sorted(range(len(SPECS)), key=lambda i: -SPECS[i].hours_ago)
    assert runs_of(cat.catalog(root, now=NOW)) == expected_runs(by_start)
    assert runs_of(cat.catalog(root, sort="started", reverse=True, now=NOW)) == expected_runs(by_start[::-1])


@pytest.mark.parametrize("column", ["loss", "seed", "steps", "duration", "run", "state"])
@pytest.mark.parametrize("reverse", [False, True])
def test_sorting_by_a_column_puts_runs_without_a_value_last(folder, column, reverse):
    root, _ = folder
    key = {"loss": "loss", "seed": "seed", "steps": "step", "duration": "duration_s", "run": "run",
           "state": "state"}[column]
    want = [expected(s, i, NOW) for i, s in enumerate(SPECS)]
    present = sorted((w for w in want if w[key] is not None), key=lambda w: w["run"])
    present = sorted(present, key=lambda w: w[key], reverse=reverse)
    missing = sorted(w["run"] for w in want if w[key] is None)
    assert runs_of(cat.catalog(root, sort=column, reverse=reverse, now=NOW)) == [w["run"] for w in present] + missing


def test_an_unknown_column_is_refused_with_a_suggestion():
    with pytest.raises(GazeError, match="cannot sort by 'los' \\(did you mean 'loss'\\?\\)"):
        cat.sort_rows([], "los")


def kept(root, **filters) -> list[str]:
    return sorted(runs_of(cat.catalog(root, cat.Filters(**filters), now=NOW)))


def where(predicate) -> list[str]:
    return sorted(expected(s, i, NOW)["run"] for i, s in enumerate(SPECS) if predicate(s))


def test_state_filters(folder):
    root, _ = folder
    for state in ("succeeded", "failed", "interrupted", "running", "queued", "lost"):
        assert kept(root, states=(state,)) == where(lambda s, state=state: expected_state(s) == state), state
    assert len(kept(root, states=("lost",))) == 1
    assert kept(root, states=("queued", "running")) == where(lambda s: expected_state(s) in ("queued", "running"))
    assert len(kept(root, states=("queued", "running"))) == 3


def test_recipe_filters_take_names_and_globs(folder):
    root, _ = folder
    assert kept(root, recipes=("sd15-smoke",)) == where(lambda s: s.recipe == "sd15-smoke")
    assert kept(root, recipes=("sdxl-*",)) == where(lambda s: s.recipe == "sdxl-standard")
    assert kept(root, recipes=("sd15-smoke", "sd15-uncropped")) == where(lambda s: s.recipe in ("sd15-smoke",
                                                                                                 "sd15-uncropped"))
    spec = "sd15-standard+high-lr=3e-4"
    assert kept(root, recipes=(spec,)) == where(lambda s: s.name == spec)
    assert kept(root, recipes=("*crop-flip*",)) == where(lambda s: "crop-flip" in s.name)
    assert kept(root, recipes=("sd15",)) == []


def test_glitch_filters_match_by_name_or_exact_value_and_all_of_them(folder):
    root, _ = folder
    high_lr = kept(root, glitches=("high-lr",))
    assert high_lr == where(lambda s: s.damage != "recipe" and any(g.startswith("high-lr=") for g in s.glitches))
    assert len(high_lr) == 5
    assert kept(root, glitches=("high-lr=3e-4",)) == where(lambda s: "high-lr=3e-4" in s.glitches)
    assert kept(root, glitches=("high-lr=2e-4", "crop-flip")) == expected_runs([15])
    assert kept(root, glitches=("crop",)) == []
    assert kept(root, glitches=("steps",)) == []  # a tweak is not a glitch


def test_since_keeps_runs_started_or_queued_since(folder):
    root, _ = folder
    assert kept(root, since=cat.parse_since("4h", NOW)) == where(lambda s: s.hours_ago < 4)
    assert kept(root, since=cat.parse_since("2d", NOW)) == where(lambda s: s.hours_ago <= 48)
    assert kept(root, since=cat.parse_since("2026-03-09T12:30", NOW)) == where(lambda s: s.hours_ago <= 23.5)
    combined = cat.Filters(states=("succeeded",), recipes=("sd15-*",), since=cat.parse_since("2d", NOW))
    assert sorted(runs_of(cat.catalog(root, combined, now=NOW))) == where(
        lambda s: s.hours_ago <= 48 and s.recipe.startswith("sd15-") and expected_state(s) == "succeeded")


def test_parse_since():
    assert cat.parse_since("2h", NOW) == NOW - timedelta(hours=2)
    assert cat.parse_since("3d", NOW) == NOW - timedelta(days=3)
    assert cat.parse_since("1w", NOW) == NOW - timedelta(weeks=1)
    assert cat.parse_since(" 90 m", NOW) == NOW - timedelta(minutes=90)
    assert cat.parse_since("1.5h", NOW) == NOW - timedelta(minutes=90)
    assert cat.parse_since("2026-03-01", NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    assert cat.parse_since("2026-03-01T10:15+02:00", NOW) == datetime(2026, 3, 1, 8, 15, tzinfo=UTC)
    assert cat.parse_since("2026-03-01T10:15:00Z", NOW) == datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
    for bad in ("yesterday", "2x", "-2h", ""):
        with pytest.raises(GazeError, match="neither a time ago"):
            cat.parse_since(bad, NOW)


def counting_reads(monkeypatch) -> list:
    """The run folders whose event files are read from now on."""
    read = []
    original = layout.read_run_scalars
    monkeypatch.setattr(layout, "read_run_scalars", lambda run_dir, *a: read.append(run_dir) or original(run_dir, *a))
    return read


def test_event_files_are_read_only_for_the_rows_kept(folder, monkeypatch):
    root, _ = folder
    (root / cat.CACHE).unlink(missing_ok=True)
    read = counting_reads(monkeypatch)
    rows = cat.catalog(root, cat.Filters(recipes=("sd15-smoke",)), now=NOW)
    assert sorted(read) == sorted(r.path for r in rows if (r.path / "logs").is_dir())
    assert len(read) == 1


def test_ended_runs_are_read_again_only_when_their_event_files_change(tmp_path, monkeypatch):
    a = rf.make_run(tmp_path, "a", stamp="20260101T000000Z-000001", loss=[0.5] * 50)
    b = rf.make_run(tmp_path, "b", stamp="20260101T000000Z-000002", loss=[0.25] * 20)
    read = counting_reads(monkeypatch)
    first = cat.catalog(tmp_path)
    assert sorted(read) == [a, b] and (tmp_path / cat.CACHE).is_file()
    read.clear()
    assert cat.catalog(tmp_path) == first and read == []
    rf.write_events(a / "logs" / "20260101000000" / "network_train", rf.sd_points([0.125] * 10, start=51))
    again = {r.run[0]: r for r in cat.catalog(tmp_path)}
    joined = pytest.approx(smoothed_end([0.5] * 50 + [0.125] * 10))
    assert read == [a] and (again["a"].step, again["a"].loss, again["b"].loss) == (60, joined, 0.25)
    (tmp_path / cat.CACHE).write_text('{"version": 1, "runs": {"a/20260101T000000Z-000001": {"step": "x"}}}')
    read.clear()
    assert {r.run[0]: r.step for r in cat.catalog(tmp_path)} == {"a": 60, "b": 20} and read == [a, b]
    (tmp_path / cat.CACHE).write_text("not json")
    assert [r.loss for r in cat.catalog(tmp_path)] == [joined, 0.25]
    assert cat.read_cache(tmp_path) != {}


def test_a_missing_runs_folder_is_one_clear_error(tmp_path):
    with pytest.raises(RunError, match="no runs folder"):
        cat.catalog(tmp_path / "nope")
    assert cat.catalog(tmp_path) == []


def test_sweeps_are_rows_and_a_broken_one_says_why(folder):
    root, made = folder
    rows = {s.sweep.split("/")[-1]: s for s in cat.sweep_rows(root)}
    assert list(rows) == [SWEEP_REPORTED, SWEEP_QUEUE, SWEEP_BROKEN]
    reported = rows[SWEEP_REPORTED]
    assert (reported.kind, reported.baseline, reported.variants, reported.seeds) == (
        "sweep", "sd15-standard", ("high-lr=3e-4",), (1, 2))
    assert [m.resolve() for m in reported.members] == [made[i].resolve() for i in range(4)]
    assert reported.created == NOW and reported.warnings == ()
    assert rows[SWEEP_QUEUE].kind == "queue" and len(rows[SWEEP_QUEUE].members) == 2
    broken = rows[SWEEP_BROKEN]
    assert broken.members == () and "sweep.json is not valid JSON" in broken.warnings[0]
    assert broken.created == datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)


def test_table_text(folder):
    root, _ = folder
    text = cat.format_rows(cat.catalog(root, cat.Filters(glitches=("high-lr=2e-4", "crop-flip")), now=NOW))
    header, rule, line = text.splitlines()
    assert header.split() == list(cat.COLUMNS)
    assert line.split() == [expected(SPECS[15], 15, NOW)["run"], "sd15-standard", "high-lr=2e-4,crop-flip", "-",
                            "5", "running", "40/100", "0.4000", "3h00m", "2026-03-10", "09:00"]
