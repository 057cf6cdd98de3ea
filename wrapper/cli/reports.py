"""Commands that read finished (or running) runs: report, compare."""

from __future__ import annotations

from pathlib import Path

import click

smoothing_option = click.option(
    "--smoothing",
    "-s",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.6,
    show_default=True,
    help="TensorBoard smoothing weight for curves and verdicts.",
)


def _run_path(text: str) -> Path:
    """A path as given, or a recipe folder under the configured runs dir (gaze report sd15-standard)."""
    from wrapper.runs.layout import find_run
    from wrapper.settings import load_settings

    return find_run(text, load_settings().runs_dir)


def _run_paths(text: str) -> list[Path]:
    """_run_path, with a sweep folder (runs/sweeps/<time>-<id>) standing for all its members."""
    from wrapper.runs.sweeps import is_sweep_dir, read_sweep

    path = _run_path(text)
    return read_sweep(path).member_dirs() if is_sweep_dir(path) else [path]


def _echo_written(paths: list[Path]) -> None:
    first, rest = paths[0], len(paths) - 2
    click.echo(f"wrote {first} (and {paths[1].name}, {rest} image{'s' * (rest != 1)})")


def _echo_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...")
@smoothing_option
@click.option("--quiet", "-q", is_flag=True, help="Print only the paths written, not the verdicts.")
@click.option("--method", type=click.Choice(["t", "bootstrap"]), default="t", show_default=True,
              help="Sweep folders: intervals by Student's/Welch's t, or by a percentile bootstrap "
                   "(too narrow with few seeds).")
def report(run_dirs: tuple[str, ...], smoothing: float, quiet: bool, method: str) -> None:
    """Write a loss report into each run folder, or an experiment report into each sweep folder.

    Example: gaze report runs/sd15-standard/20240101T120000Z-a1b2c3

    Each is report.html, report.md and plots/. A sweep folder (runs/sweeps/<time>-<id>) gets the
    experiment report: for every variant and metric
    the mean over seeds with its 95% interval and the difference from the baseline with its interval,
    flagged "beyond seed noise" when that interval excludes zero; curves with the seeds' spread as a
    band; each member's run report linked.

    A recipe folder (runs/sd15-standard, or just sd15-standard) means its newest run. The report
    has the recipe with its deliberate glitches labelled, the verdict table (each verdict with its
    rule and thresholds), raw and smoothed loss, learning rate, validation loss when logged, and a
    grid of the trainer's sample images (prompt x step).
    """
    from wrapper.cli.runs import refresh_index, runs_dir_of
    from wrapper.curves import verdicts as curves
    from wrapper.reports.run import load_run, render_report
    from wrapper.runs.sweeps import is_sweep_dir

    thresholds = curves.Thresholds(smoothing=smoothing)
    reported = []
    for text in run_dirs:
        path = _run_path(text)
        if is_sweep_dir(path):
            _experiment_report(path, thresholds, method, quiet)
            reported.append(path)
            continue
        view = load_run(path)
        written = render_report(view, thresholds)
        reported.append(view.path)
        _echo_warnings(written.warnings)
        _echo_written(written.paths)
        if not quiet:
            for v in written.verdicts:
                click.echo(f"  {v.metric:<14} {v.status:<18} {v.notes}")
    for runs_dir in dict.fromkeys(runs_dir_of(path) for path in reported):
        refresh_index(runs_dir)


def _experiment_report(sweep_dir: Path, thresholds, method: str, quiet: bool) -> None:
    from wrapper.reports.experiment import write_experiment_report

    written = write_experiment_report(sweep_dir, thresholds=thresholds, method=method)
    _echo_warnings([f"left out: {line}" for line in written.left_out])
    _echo_written(written.paths)
    if not quiet:
        click.echo("  beyond seed noise:" + ("".join(f"\n    {line}" for line in written.beyond) or " none"))


@click.command("compare")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...")
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="New or empty folder for comparison.html, comparison.md and plots/, never inside a run folder "
                   "[default: comparisons/<UTC time>-<id>].")
@click.option("--replace", is_flag=True, help="Replace the earlier comparison in --out (its own files only).")
@smoothing_option
def compare(run_dirs: tuple[str, ...], out_dir: Path | None, replace: bool, smoothing: float) -> None:
    """Compare runs: overlaid smoothed curves, differing parameters, verdicts, sample grids.

    Example: gaze compare runs/sd15-standard runs/sd15-standard+high-lr=3e-4 --out comparisons/lr

    Curves are aligned by step; the parameter table lists only values that differ between the
    runs; sample grids show run x step for each prompt. A recipe folder means its newest run, a sweep
    folder (runs/sweeps/<time>-<id>) all its members.
    """
    from wrapper.curves import verdicts as curves
    from wrapper.errors import RunError
    from wrapper.reports.compare import check_out_dir, load_runs, new_comparison_dir, render_comparison

    paths = [p for t in run_dirs for p in _run_paths(t)]
    if len(paths) < 2:
        raise RunError("compare needs at least two runs (use `gaze report` for one)")
    if out_dir:
        check_out_dir(out_dir, replace=replace)  # before reading any run
    views = load_runs(paths)
    out = out_dir or new_comparison_dir()
    written = render_comparison(views, out, curves.Thresholds(smoothing=smoothing), replace=replace)
    for view in views:
        _echo_warnings([f"{view.label}: {w}" for w in view.warnings()])
    _echo_written(written)


COMMANDS = [report, compare]
