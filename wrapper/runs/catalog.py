"""Every run of a runs folder as one row, and every sweep: what `gaze runs` prints and index.html lists.

Run folders are read leniently: a file that cannot be used becomes a warning on its row, never an
error. The small records (recipe.json, status.json, run.json) are read for every run and filtered
first; the TensorBoard logs (steps done, final smoothed loss) only for the rows that are kept, and
for an ended run only when its event files changed since the last listing (`CACHE`).
"""

from __future__ import annotations

import fnmatch
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

from wrapper.errors import GazeError, RunError, did_you_mean
from wrapper.files import write_atomic
from wrapper.kohya.logs import find_event_files
from wrapper.runs import layout as runs
from wrapper.runs import sweeps
from wrapper.runs.watch import duration_text, progress_of

STATES = get_args(runs.State)
COLUMNS = ("run", "recipe", "glitches", "tweaks", "seed", "state", "steps", "loss", "duration", "started")
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: In the runs folder: each ended run's last step, final loss and log problems, with the size and time of
#: every event file they were read from. A run whose files differ is read again. Bump the version when
#: what is stored is computed differently.
CACHE, CACHE_VERSION = ".runs-cache.json", 1


@dataclass(frozen=True)
class RunRow:
    """One run as `gaze runs` shows it; None where its folder does not say."""

    run: str  # the run folder, relative to the runs folder
    path: Path
    name: str  # the recipe spec it trained (recipe.json's name)
    recipe: str  # its baseline
    glitches: tuple[str, ...] = ()
    tweaks: tuple[str, ...] = ()  # the applied modifiers that are not glitches
    seed: int | None = None
    state: str | None = None
    step: int | None = None
    total: int | None = None
    loss: float | None = None  # smoothed (TensorBoard's 0.6), at the last step
    started: datetime | None = None
    ended: datetime | None = None
    duration_s: float | None = None
    created: datetime | None = None  # the folder's stamp
    warnings: tuple[str, ...] = ()

    @property
    def when(self) -> datetime | None:
        """When it started, else when its folder was made (a queued run)."""
        return self.started or self.created


@dataclass(frozen=True)
class SweepRow:
    """One sweep folder (runs/sweeps/<stamp>/): its design and its members' run folders."""

    sweep: str  # relative to the runs folder
    path: Path
    kind: str = "?"
    baseline: str | None = None
    variants: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    backend: str = "?"
    members: tuple[Path, ...] = ()
    created: datetime | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Filters:
    """Which runs to keep: any of `states`, any of `recipes` (names or globs, matching the recipe or
    its full spec), every one of `glitches` (by name, or name=value exactly), from `since` on."""

    states: tuple[str, ...] = ()
    recipes: tuple[str, ...] = ()
    glitches: tuple[str, ...] = ()
    since: datetime | None = None

    def keep(self, row: RunRow) -> bool:
        if self.states and row.state not in self.states:
            return False
        if self.recipes and not any(fnmatch.fnmatchcase(n, p) for p in self.recipes for n in (row.recipe, row.name)):
            return False
        if not all(has_glitch(row, g) for g in self.glitches):
            return False
        return self.since is None or (row.when is not None and row.when >= self.since)


def has_glitch(row: RunRow, wanted: str) -> bool:
    """`high-lr` matches high-lr and high-lr=3e-4; `high-lr=3e-4` only that value."""
    return any(g == wanted or ("=" not in wanted and g.partition("=")[0] == wanted) for g in row.glitches)


# ---- reading ---------------------------------------------------------------------------------------


def find_run_dirs(runs_dir: Path) -> list[Path]:
    """Every run folder of a runs folder (runs/<recipe>/<stamp>), sweep folders aside, in name order."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise RunError(f"no runs folder {str(runs_dir)!r}: give a folder of runs/<recipe>/<stamp>/ folders")
    return sorted((p for p in runs_dir.glob("*/*") if p.parent.name != sweeps.SWEEPS and runs.is_run_dir(p)),
                  key=lambda p: (p.parent.name, p.name))


def _time(text: Any, where: str, problems: list[str]) -> datetime | None:
    """An ISO time as an aware UTC datetime (naive ones are UTC), or None with a problem noted."""
    if text is None or text == "":
        return None
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        problems.append(f"{where} is {text!r}; expected an ISO time")
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def stamp_time(folder: Path) -> datetime | None:
    """The UTC time in a stamped folder's name (<YYYYmmddTHHMMSSZ>-<id>), or None."""
    try:
        return datetime.strptime(Path(folder).name.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _status(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """status.json with lost runs applied; when that cannot be decided, as written, with the reason."""
    try:
        return runs.status_fields(run_dir)
    except (RunError, OSError) as exc:
        values, problems = runs.read_fields(run_dir / runs.STATUS, runs.Status)
        return values, [*problems, f"cannot tell whether it is lost: {exc}"]


def _seed(recipe: dict[str, Any]) -> int | None:
    training = recipe.get("training")
    seed = training.get("seed") if isinstance(training, dict) else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _total(run_dir: Path, recipe: dict[str, Any], problems: list[str]) -> int | None:
    """The steps it trains: run.json's max_train_steps, else the recipe's."""
    info, found = runs.read_fields(run_dir / runs.RUN, runs.RunInfo)
    problems += found
    training = recipe.get("training")
    total = info.get("max_train_steps") or (training.get("max_train_steps") if isinstance(training, dict) else None)
    return total if isinstance(total, int) and not isinstance(total, bool) and total > 0 else None


def read_row(runs_dir: Path, run_dir: Path, *, now: datetime | None = None) -> RunRow:
    """A run's row from its small records only (no steps or loss yet: `with_progress` adds them)."""
    run_dir = Path(run_dir)
    record, problems = runs.read_fields(run_dir / runs.RECIPE, runs.RecipeRecord)
    status, found = _status(run_dir)
    problems += found
    glitches = tuple(record.get("glitches", ()))
    recipe = record.get("recipe", {})
    started = _time(status.get("started_at"), f"{run_dir / runs.STATUS}: started_at", problems)
    ended = _time(status.get("ended_at"), f"{run_dir / runs.STATUS}: ended_at", problems)
    state = status.get("state")
    if state is None and not found:
        what = "has no 'state'" if (run_dir / runs.STATUS).exists() else "is missing"
        problems.append(f"{run_dir / runs.STATUS} {what}: the run's state is unknown")
    end = ended or ((now or datetime.now(UTC)) if state == "running" else None)
    name = record.get("name") or run_dir.parent.name
    try:
        relative = run_dir.relative_to(runs_dir).as_posix()
    except ValueError:
        relative = str(run_dir)
    return RunRow(
        run=relative,
        path=run_dir,
        name=name,
        recipe=record.get("baseline") or name.split("+")[0],
        glitches=glitches,
        tweaks=tuple(m for m in record.get("modifiers", ()) if m not in glitches),
        seed=_seed(recipe),
        state=state,
        total=_total(run_dir, recipe, problems),
        started=started,
        ended=ended,
        duration_s=max(0.0, (end - started).total_seconds()) if started and end else None,
        created=stamp_time(run_dir),
        warnings=tuple(problems),
    )


def with_progress(row: RunRow, cache: dict[str, Any] | None = None) -> RunRow:
    """The row with its last step and final smoothed loss. A run still going (or lost) is read as
    `gaze status` reads it, train.log's progress line included; an ended one from its TensorBoard logs,
    or from `cache` (updated here) when its event files are the ones it was read from."""
    if row.state in (*runs.ACTIVE, "lost"):
        from wrapper.curves.tblog import EventFileWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EventFileWarning)  # a file being written ends in half a record
            step, loss = progress_of(row.path)
        return replace(row, step=step, loss=loss)
    if not runs.logs_dir(row.path).is_dir():
        return row
    if cache is None:
        return _read_progress(row)
    try:
        files = [[f.relative_to(row.path).as_posix(), (st := f.stat()).st_size, st.st_mtime_ns]
                 for f in find_event_files(runs.logs_dir(row.path))]
    except OSError:
        return _read_progress(row)
    known = cache.get(row.run)
    if _usable(known, files):
        return replace(row, step=known["step"], loss=known["loss"], warnings=(*row.warnings, *known["problems"]))
    done = _read_progress(row)
    cache[row.run] = {"files": files, "step": done.step, "loss": done.loss,
                      "problems": list(done.warnings[len(row.warnings):])}
    return done


def _usable(entry: Any, files: list) -> bool:
    """A cache entry read from these very files, with values of the right types."""
    if not isinstance(entry, dict) or entry.get("files") != files:
        return False
    step, loss, problems = entry.get("step"), entry.get("loss"), entry.get("problems")
    return (step is None or type(step) is int) and (loss is None or type(loss) in (int, float)) \
        and isinstance(problems, list) and all(isinstance(p, str) for p in problems)


def _read_progress(row: RunRow) -> RunRow:
    """The last step and final smoothed loss of an ended run, from its event files."""
    from wrapper.curves.smoothing import loss_tag, series
    from wrapper.curves.stats import curve_metrics
    from wrapper.curves.tblog import EventFileWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EventFileWarning)  # kept in the frame's problems, shown on the row
            frame = runs.read_run_scalars(row.path)
        tag = loss_tag(frame)
    except (GazeError, OSError, ValueError) as exc:
        return replace(row, warnings=(*row.warnings, f"{runs.logs_dir(row.path)}: cannot be read ({exc})"))
    notes = (*row.warnings, *frame.attrs.get("problems", []))
    if tag is None:
        return replace(row, warnings=notes)
    steps = series(frame, tag)[0]
    return replace(row, step=int(steps[-1]) if len(steps) else None, loss=curve_metrics(frame)["final_loss"],
                   warnings=notes)


def catalog(runs_dir: Path, filters: Filters | None = None, *, sort: str = "started", reverse: bool = False,
            now: datetime | None = None) -> list[RunRow]:
    """The rows of every run under `runs_dir` that `filters` keep, with their progress, sorted."""
    runs_dir = Path(runs_dir)
    rows = [read_row(runs_dir, d, now=now) for d in find_run_dirs(runs_dir)]
    cache = read_cache(runs_dir)
    before = json.dumps(cache, sort_keys=True)
    rows = [with_progress(r, cache) for r in rows if filters is None or filters.keep(r)]
    if json.dumps(cache, sort_keys=True) != before:
        try:
            write_atomic(runs_dir / CACHE, json.dumps({"version": CACHE_VERSION, "runs": cache}) + "\n")
        except OSError:  # a runs folder this user may not write to: list it all the same
            pass
    return sort_rows(rows, sort, reverse=reverse)


def read_cache(runs_dir: Path) -> dict[str, Any]:
    """The runs folder's cache of ended runs' progress ({} when absent, unreadable or of another version)."""
    try:
        data = json.loads((Path(runs_dir) / CACHE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    ok = isinstance(data, dict) and data.get("version") == CACHE_VERSION and isinstance(data.get("runs"), dict)
    return data["runs"] if ok else {}


# ---- sorting, filtering words ---------------------------------------------------------------------------


def _sort_key(row: RunRow, column: str) -> Any:
    return {
        "run": row.run,
        "recipe": (row.recipe, row.name),
        "glitches": ",".join(row.glitches) or None,
        "tweaks": ",".join(row.tweaks) or None,
        "seed": row.seed,
        "state": row.state,
        "steps": row.step,
        "loss": row.loss,
        "duration": row.duration_s,
        "started": row.when,
    }[column]


def sort_rows(rows: Sequence[RunRow], column: str = "started", *, reverse: bool = False) -> list[RunRow]:
    """Rows by one column (ties in folder order); rows without a value come last either way."""
    if column not in COLUMNS:
        raise GazeError(f"cannot sort by {column!r}{did_you_mean(column, COLUMNS)}; columns: {', '.join(COLUMNS)}")
    ordered = sorted(rows, key=lambda r: r.run)
    present = [r for r in ordered if _sort_key(r, column) is not None]
    missing = [r for r in ordered if _sort_key(r, column) is None]
    return sorted(present, key=lambda r: _sort_key(r, column), reverse=reverse) + missing


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`2h`, `3d`, `30m`, `1w`, `90s` ago, or an ISO date or time (UTC unless it says otherwise)."""
    if match := _RELATIVE.match(text):
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[match[2]]: float(match[1])})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise GazeError(f"--since {text!r} is neither a time ago (2h, 3d, 30m, 1w) nor an ISO date or time "
                        "(2026-03-01, 2026-03-01T10:15)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# ---- sweeps ----------------------------------------------------------------------------------------


def sweep_rows(runs_dir: Path) -> list[SweepRow]:
    """Every sweep folder of a runs folder (runs/sweeps/<stamp>/), oldest first; a sweep.json that
    cannot be used is a row with its folder and the reason."""
    runs_dir = Path(runs_dir)
    found = []
    for folder in sorted(p for p in (runs_dir / sweeps.SWEEPS).glob("*") if sweeps.is_sweep_dir(p)):
        relative = folder.relative_to(runs_dir).as_posix()
        try:
            r = sweeps.read_sweep(folder)
        except RunError as exc:
            found.append(SweepRow(relative, folder, created=stamp_time(folder), warnings=(str(exc),)))
            continue
        problems: list[str] = []
        created = _time(r.created_at, f"{folder / sweeps.SWEEP}: created_at", problems) or stamp_time(folder)
        found.append(SweepRow(relative, folder, r.kind, r.baseline, tuple(r.variants), tuple(r.seeds), r.backend,
                              tuple(r.member_dirs()), created, tuple(problems)))
    return found


# ---- output ----------------------------------------------------------------------------------------


def time_text(when: datetime | None) -> str:
    return "-" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def cells(row: RunRow) -> dict[str, str]:
    """The row as text, by column (what the table and the page show)."""
    return {
        "run": row.run,
        "recipe": row.recipe,
        "glitches": ",".join(row.glitches) or "-",
        "tweaks": ",".join(row.tweaks) or "-",
        "seed": "-" if row.seed is None else str(row.seed),
        "state": row.state or "?",
        "steps": "-" if row.step is None and row.total is None else f"{'-' if row.step is None else row.step}/"
                 f"{row.total or '?'}",
        "loss": "-" if row.loss is None else f"{row.loss:.4f}",
        "duration": duration_text(row.duration_s),
        "started": time_text(row.started),
    }


def format_rows(rows: Sequence[RunRow]) -> str:
    """A plain-text table, one line per run."""
    body = [tuple(cells(r).values()) for r in rows]
    widths = [max(len(row[i]) for row in [COLUMNS, *body]) for i in range(len(COLUMNS))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [COLUMNS, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def as_json(row: RunRow) -> dict[str, Any]:
    """The row as JSON values: times in ISO 8601 (UTC), lists for glitches and tweaks."""
    iso = lambda t: None if t is None else t.isoformat(timespec="seconds")  # noqa: E731
    return {"run": row.run, "path": str(row.path), "recipe": row.recipe, "name": row.name,
            "glitches": list(row.glitches), "tweaks": list(row.tweaks), "seed": row.seed, "state": row.state,
            "step": row.step, "total": row.total, "loss": row.loss, "duration_s": row.duration_s,
            "started": iso(row.started), "ended": iso(row.ended), "created": iso(row.created),
            "warnings": list(row.warnings)}
