"""All runs at a glance: `gaze runs`, and the runs folder's index.html that other commands refresh."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import get_args

import click

from wrapper.runs.layout import State

STATES = get_args(State)
#: wrapper.runs.catalog.COLUMNS, spelled out here so that `gaze --help` need not import the catalog
SORTABLE = ("run", "recipe", "glitches", "tweaks", "seed", "state", "steps", "loss", "duration", "started")


@click.command("runs")
@click.argument("runs_dir", required=False, type=click.Path(path_type=Path), metavar="[RUNS_DIR]")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES),
              help="Only runs in this state (repeat for several).")
@click.option("--recipe", "recipes", multiple=True, metavar="NAME|GLOB",
              help="Only runs of this recipe: its name or a glob ('sd15-*'), matched against the baseline and the "
                   "full spec (repeat for several).")
@click.option("--glitch", "glitches", multiple=True, metavar="NAME[=VALUE]",
              help="Only runs with this glitch: high-lr matches any value, high-lr=3e-4 that one "
                   "(repeat: runs with all of them).")
@click.option("--since", metavar="WHEN", help="Only runs started (or queued) since: 2h, 3d, 1w ago, or an ISO date "
                                              "or time (UTC unless it says otherwise).")
@click.option("--sort", "sort", type=click.Choice(SORTABLE), default="started", show_default=True,
              help="The column to sort by.")
@click.option("--reverse", is_flag=True, help="Sort in descending order.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON list instead of a table.")
@click.option("--html", "html", is_flag=True,
              help="Also (re)write RUNS_DIR/index.html, the page of every run and sweep (filters do not apply).")
def runs(runs_dir: Path | None, states: tuple[str, ...], recipes: tuple[str, ...], glitches: tuple[str, ...],
         since: str | None, sort: str, reverse: bool, as_json: bool, html: bool) -> None:
    """List every run of a runs folder: recipe, glitches, tweaks, seed, state, steps, loss, duration, start.

    Example: gaze runs --glitch high-lr --state succeeded --sort loss

    RUNS_DIR defaults to the settings' runs folder. The loss is the smoothed training loss at the last
    step (TensorBoard's smoothing, 0.6); a queued or running run whose gaze process is gone is "lost".
    A run folder that cannot be read in full is listed with what can be read, and a warning.
    """
    from wrapper.runs import catalog as cat
    from wrapper.settings import load_settings

    runs_dir = runs_dir or load_settings().runs_dir
    filters = cat.Filters(states, recipes, glitches, cat.parse_since(since) if since else None)
    if html:
        from wrapper.reports.index import write_index

        every = cat.catalog(runs_dir)
        click.echo(f"wrote {write_index(runs_dir, every)}", err=True)
        rows = cat.sort_rows([r for r in every if filters.keep(r)], sort, reverse=reverse)
    else:
        rows = cat.catalog(runs_dir, filters, sort=sort, reverse=reverse)
    for row in rows:
        for warning in row.warnings:
            click.secho(f"warning: {row.run}: {warning}", fg="yellow", err=True)
    if as_json:
        click.echo(json.dumps([cat.as_json(r) for r in rows], indent=2))
    else:
        click.echo(cat.format_rows(rows) if rows else f"no runs in {runs_dir}" + (" match" if any(
            (states, recipes, glitches, since)) else ""))


@contextmanager
def index_refreshed(*runs_dirs: Path | None) -> Iterator[None]:
    """Rewrite these runs folders' index.html when the block ends, however it ends but by Ctrl-C."""
    try:
        yield
    finally:
        if not isinstance(sys.exc_info()[1], KeyboardInterrupt):
            for runs_dir in dict.fromkeys(runs_dirs):
                refresh_index(runs_dir)


def refresh_index(runs_dir: Path | None) -> None:
    """Rewrite a runs folder's index.html after a command; a failure is a warning, never the command's."""
    if runs_dir is None or not Path(runs_dir).is_dir():
        return
    from wrapper.reports.index import INDEX, write_index

    try:
        write_index(runs_dir)
    except Exception as exc:  # the page is a convenience: the command itself has succeeded
        click.secho(f"warning: could not write {Path(runs_dir) / INDEX}: {exc}", fg="yellow", err=True)


def runs_dir_of(run_dir: Path) -> Path | None:
    """The runs folder holding a run (runs/<recipe>/<stamp>), when it is one: the settings' runs folder, or
    a folder that already has index.html or sweeps/ (never an arbitrary folder two levels up)."""
    from wrapper.errors import GazeError
    from wrapper.reports.index import INDEX
    from wrapper.runs.sweeps import SWEEPS
    from wrapper.settings import load_settings

    folder = Path(run_dir).resolve().parent.parent
    if (folder / INDEX).is_file() or (folder / SWEEPS).is_dir():
        return folder
    try:
        configured = load_settings().runs_dir.resolve()
    except (GazeError, OSError):  # a broken gaze.toml is the command's business, not the page's
        return None
    return folder if folder == configured else None


COMMANDS = [runs]
