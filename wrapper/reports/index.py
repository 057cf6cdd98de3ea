"""index.html of a runs folder: every run and sweep, linked to its report, and a `gaze compare` builder.

A static page (inline CSS and a few lines of script, nothing fetched) that works opened from disk.
It is rewritten at the end of `gaze run`, `report`, `queue` and `sweep`, and by `gaze runs --html`.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from wrapper.files import write_atomic
from wrapper.reports import pages
from wrapper.reports.pages import Cell, Code, Fold, Heading, Items, Para, Table
from wrapper.reports.run import REPORT_HTML as REPORT
from wrapper.runs.catalog import COLUMNS, RunRow, SweepRow, catalog, cells, sort_rows, sweep_rows, time_text

INDEX = "index.html"
LEVELS = {"succeeded": "ok", "failed": "bad", "interrupted": "warn", "lost": "warn", "running": "info"}
PROMPT = "Tick two or more runs to build the command."

# Builds `gaze compare` from the ticked runs (each checkbox's value is its folder, quoted for a shell).
SCRIPT = """(function () {
  var out = document.getElementById("compare");
  var boxes = document.querySelectorAll("input[type=checkbox]");
  var copy = document.createElement("button");
  copy.type = "button";
  copy.textContent = "Copy";
  out.parentNode.insertBefore(copy, out.nextSibling);
  function update() {
    var picked = [];
    for (var i = 0; i < boxes.length; i++) { if (boxes[i].checked) { picked.push(boxes[i].value); } }
    out.textContent = picked.length < 2 ? PROMPT : "gaze compare " + picked.join(" ");
    copy.disabled = picked.length < 2;
  }
  function copied() {
    copy.textContent = "Copied";
    setTimeout(function () { copy.textContent = "Copy"; }, 1500);
  }
  function select() {
    var range = document.createRange();
    range.selectNodeContents(out);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
    copied();
  }
  copy.addEventListener("click", function () {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(out.textContent).then(copied, select);
    } else {
      select();
    }
  });
  for (var i = 0; i < boxes.length; i++) { boxes[i].addEventListener("change", update); }
  update();
})();
""".replace("PROMPT", repr(PROMPT))


def _report(folder: Path, relative: str) -> str | None:
    return f"{relative}/{REPORT}" if (folder / REPORT).is_file() else None


def run_table(runs_dir: Path, rows: Sequence[RunRow]) -> Table:
    """Every run: its folder (a checkbox, and a link to its report), then the columns of `gaze runs`."""
    body = []
    for row in rows:
        text = cells(row)
        folder, _, stamp = row.run.rpartition("/")
        run = Cell(f"{folder}/" if folder else stamp, href=_report(row.path, row.run), sub=stamp if folder else None,
                   check=shlex.quote(str(runs_dir / row.run)))
        state = Cell(text["state"], LEVELS.get(row.state or ""))
        body.append([run, *(state if c == "state" else text[c] for c in COLUMNS[1:])])
    return Table(COLUMNS, body)


def sweep_table(sweeps: Sequence[SweepRow], rows: Sequence[RunRow]) -> Table:
    """Every sweep: its design, its members' states, and a link to its report."""
    states = {r.path.resolve(): r.state or "?" for r in rows}
    body = []
    for s in sweeps:
        counts = Counter(states.get(m.resolve(), "missing") for m in s.members)
        members = f"{len(s.members)}: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) \
            if s.members else "-"
        report = _report(s.path, s.sweep)
        body.append([Cell(s.sweep, sub=s.kind), s.baseline or "-", ", ".join(s.variants) or "-",
                     ", ".join(map(str, s.seeds)) or "-", s.backend, members, time_text(s.created),
                     Cell("report", href=report) if report else "-"])
    return Table(("sweep", "baseline", "variants", "seeds", "on", "runs", "created", "report"), body)


def index_blocks(runs_dir: Path, rows: Sequence[RunRow], sweeps: Sequence[SweepRow]) -> list:
    blocks: list = [Heading("Compare runs"), Para("Tick runs in the table; this command compares them:"),
                    Code(PROMPT, id="compare"), Heading(f"Runs ({len(rows)})")]
    blocks.append(run_table(runs_dir, rows) if rows else Para("No runs yet."))
    blocks.append(Heading(f"Sweeps ({len(sweeps)})"))
    blocks.append(sweep_table(sweeps, rows) if sweeps else Para("No sweeps yet."))
    notes = [f"{r.run}: {w}" for r in rows for w in r.warnings]
    notes += [f"{s.sweep}: {w}" for s in sweeps for w in s.warnings]
    if notes:
        blocks.append(Fold(f"Warnings ({len(notes)})", [Items(notes)]))
    return blocks


def write_index(runs_dir: Path, rows: Sequence[RunRow] | None = None, *, now: datetime | None = None) -> Path:
    """Write `<runs_dir>/index.html` (atomically) from `rows` (default: every run read now); return its path."""
    runs_dir = Path(runs_dir).absolute()
    rows = sort_rows(catalog(runs_dir, now=now) if rows is None else rows, "started", reverse=True)
    sweeps = sweep_rows(runs_dir)
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"{runs_dir}: {len(rows)} runs, {len(sweeps)} sweeps, newest first; written {when}"
    page = pages.to_html("Runs", index_blocks(runs_dir, rows, sweeps), subtitle, script=SCRIPT)
    path = runs_dir / INDEX
    pages.check_writable(runs_dir, [path])
    write_atomic(path, page)
    return path
