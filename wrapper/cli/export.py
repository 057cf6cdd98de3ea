"""Commands that copy finished runs into other experiment trackers: export mlflow."""

from __future__ import annotations

import click

from wrapper.cli.reports import _run_paths


@click.group("export")
def export() -> None:
    """Copy finished runs into another experiment tracker.

    Example: gaze export mlflow runs/sweeps/20260301T101500Z-3fa2c1
    """


@export.command("mlflow")
@click.argument("paths", nargs=-1, required=True, metavar="RUN|SWEEP...")
@click.option("--tracking-uri", metavar="URI",
              help="An MLflow tracking server (http://host:5000) or store URI [default: sqlite:///<runs>/mlflow.db, "
                   "artifacts in <runs>/mlflow-artifacts].")
@click.option("--experiment", metavar="NAME", help="MLflow experiment for every run [default: each run's baseline].")
@click.option("--with-lora", is_flag=True, help="Also upload each run's LoRA files (.safetensors).")
def mlflow(paths: tuple[str, ...], tracking_uri: str | None, experiment: str | None, with_lora: bool) -> None:
    """Log finished runs into MLflow: parameters, every loss point, verdicts, report and sample grids.

    Example: gaze export mlflow runs/sd15-standard/20260301T101500Z-3fa2c1 --tracking-uri http://localhost:5000

    A sweep folder stands for its member runs and a recipe folder for its newest run. Exporting again
    adds only what the store lacks (a run is found by its gaze.run tag), so nothing is duplicated; runs
    still queued or running are skipped. Browse the default store with the full mlflow package:
    `mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`.
    """
    from wrapper.reports.mlflow_export import export_runs, require_mlflow
    from wrapper.runs.layout import resolve_run_dir
    from wrapper.settings import load_settings

    require_mlflow()
    run_dirs = [resolve_run_dir(p) for text in paths for p in _run_paths(text)]
    results = export_runs(run_dirs, runs_dir=load_settings().runs_dir, tracking_uri=tracking_uri,
                          experiment=experiment, with_lora=with_lora, log=lambda _m: None)
    for r in results:
        click.secho(f"{r.action}: {r.message}", fg="yellow" if r.action == "skipped" else None,
                    err=r.action == "skipped")
    if all(r.action == "skipped" for r in results):
        raise SystemExit(1)


COMMANDS = [export]
