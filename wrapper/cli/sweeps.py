"""Commands that watch and stop runs and sweeps, whatever executes them: status, cancel."""

from __future__ import annotations

import time
from pathlib import Path

import click


def _heading(path: Path) -> str | None:
    from wrapper.runs.sweeps import is_sweep_dir, read_sweep

    if not is_sweep_dir(path):
        return None
    r = read_sweep(path)
    what = f"{r.kind} of {len(r.members)} run(s)" + (f" (baseline {r.baseline})" if r.baseline else "")
    where = f"on Slurm (array {', '.join(r.submissions) or 'not submitted'}, {r.parallel} at once)" \
        if r.backend == "slurm" else f"on this machine ({r.parallel} at once)"
    return f"sweep {path}: {what} {where}, since {r.created_at}"


@click.command("status")
@click.argument("path", required=False, type=click.Path(path_type=Path), metavar="[RUNS_DIR|SWEEP_DIR|RUN_DIR]")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True,
              help="How many of a runs folder's newest runs to show.")
@click.option("--watch", "-w", "every", type=click.FloatRange(1), metavar="SECONDS",
              help="Show it again every SECONDS until every run has ended.")
def status(path: Path | None, limit: int, every: float | None) -> None:
    """Show runs with their state, where they run, step, smoothed loss and elapsed time.

    Example: gaze status runs/sweeps/20260301T101500Z-3fa2c1

    A sweep folder shows its members (queued, running, succeeded, failed, interrupted, lost), a run
    folder that run, a runs folder (default: the settings' runs_dir) its newest runs. Slurm members
    are checked against squeue: a task pending again after a requeue shows "queued".
    """
    from wrapper.runs.watch import format_views, views_for
    from wrapper.settings import load_settings

    path = path or load_settings().runs_dir
    while True:
        views = views_for(path, limit)
        heading = _heading(path)
        click.echo((heading + "\n" if heading else "") + (format_views(views) if views else f"no runs in {path}"))
        if every is None or all(v.ended for v in views):
            return
        time.sleep(every)
        click.echo()


@click.command("cancel")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="SWEEP_DIR|RUN_DIR")
def cancel(path: Path) -> None:
    """Stop a run, or every run of a sweep, on this machine or on Slurm; they end "interrupted".

    Example: gaze cancel runs/sweeps/20260301T101500Z-3fa2c1

    Slurm runs are cancelled with scancel; a local run's trainer is stopped through the gaze process
    that holds it (its lock file names the pid and host). `gaze resume RUN_DIR` continues one later.
    """
    from wrapper.runs.watch import cancel as cancel_runs
    from wrapper.runs.watch import format_views

    click.echo(format_views(cancel_runs(path, log=click.echo)))


COMMANDS = [status, cancel]
