"""The metrics command: numbers for the glitches in a run's images."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("metrics")
@click.argument("paths", nargs=-1, required=True, metavar="RUN_DIR|GENERATION_DIR...")
@click.option("--against", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Training images to compare with (default: the run's prepared images).")
@click.option("--workers", type=click.IntRange(1), help="Processes decoding images (default: every core).")
def metrics(paths: tuple[str, ...], against: Path | None, workers: int | None) -> None:
    """Measure the images of runs and generation grids: colour, contrast, texture, blocking, diversity.

    Example: gaze metrics runs/sd15-standard+high-lr=3e-4 --against ~/data/fashion

    A run folder means its trainer samples and every generation grid of it; each folder gets
    metrics.json (per image, per grid cell, per checkpoint, overall) and metrics.csv, and a grid's
    index.json gets each image's numbers. Metrics that need model weights run when gaze.toml's
    [metrics] names them; otherwise each is skipped with its reason.
    """
    from wrapper.generation.learned import learned_metrics
    from wrapper.generation.measure import measure_folder, targets
    from wrapper.runs.layout import find_run
    from wrapper.settings import load_settings

    settings = load_settings()
    learned = learned_metrics(settings.metrics)
    for text in paths:
        for folder, what, items, default_against in targets(find_run(text, settings.runs_dir)):
            measured, written = measure_folder(folder, what, items, against=against or default_against,
                                               workers=workers, learned=learned)
            click.echo(f"{folder}: {len(measured.frame)} {what} image(s) measured -> {written[0].name}, "
                       f"{written[1].name}")
            for problem in measured.problems:
                click.secho(f"warning: {problem}", fg="yellow", err=True)
            for name, reason in measured.skipped.items():
                click.echo(f"  skipped {name}: {reason}")


COMMANDS = [metrics]
