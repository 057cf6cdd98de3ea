"""Commands that train: run, resume, queue, sweep, demo."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from wrapper.cli.recipes import current_registry
from wrapper.kohya.logs import parse_progress
from wrapper.recipe import FAMILIES


class ProgressPrinter:
    """Echo the trainer's output, turning its progress bar into one compact, updating line."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.last_step: int | None = None

    def __call__(self, line: str) -> None:
        progress = parse_progress(line)
        if progress is None:
            if self.last_step is not None and self.tty:
                self.stream.write("\n")
            self.last_step = None if self.tty else self.last_step
            if line.strip():
                self.stream.write(line + "\n")
            self.stream.flush()
            return
        if progress.step == self.last_step:
            return
        self.last_step = progress.step
        p = progress
        text = f"step {p.step}/{p.total}  loss {p.loss or '-'}  {p.speed or '-'}  elapsed {p.elapsed}"
        self.stream.write(("\r" + text.ljust(70)) if self.tty else text + "\n")
        self.stream.flush()


def run_options(f):
    for option in reversed(
        [
            click.option("--dataset", metavar="DIR", help="Source image folder (default: settings)."),
            click.option("--model", metavar="PATH", help="Base checkpoint (default: settings)."),
            click.option("--runs-dir", metavar="DIR", help="Where run directories go (default: settings, runs/)."),
            click.option(
                "--gpus", type=click.IntRange(1), default=1, show_default=True, help="GPUs (processes) to use."
            ),
            click.option(
                "--threads",
                type=click.IntRange(1),
                help="CPU threads per process (default: all cores on a CPU, 8 with a GPU).",
            ),
            click.option(
                "--sd-scripts",
                "sd_scripts",
                metavar="DIR",
                help="sd-scripts checkout (default: $SD_SCRIPTS_DIR, then vendor/sd-scripts).",
            ),
        ]
    ):
        f = option(f)
    return f


def _requests(specs: list[str], dataset, model, runs_dir, gpus, threads, sd_scripts) -> list:
    """(spec, recipe, RunRequest) for each spec, every name and path checked before any run starts."""
    from wrapper.kohya.checkout import find_checkout, require_train_extra
    from wrapper.runs.train import request_for
    from wrapper.settings import load_settings

    settings = load_settings()
    registry = current_registry(settings)
    checkout = find_checkout(sd_scripts)
    require_train_extra()
    recipes = [registry.resolve(spec) for spec in specs]
    return [
        (spec, recipe, request_for(recipe, settings, checkout, dataset=dataset, model=model, runs_dir=runs_dir,
                                   gpus=gpus, threads=threads))
        for spec, recipe in zip(specs, recipes, strict=True)
    ]


def _report_outcome(outcome) -> None:
    from wrapper.runs.layout import log_tail

    s = outcome.status
    color = {"succeeded": "green", "interrupted": "yellow"}.get(s.state, "red")
    click.secho(f"{s.state}: {outcome.run_dir} ({outcome.duration_s:.0f} s)", fg=color)
    for note in outcome.notes:
        click.echo(note)
    if outcome.failure:
        f = outcome.failure
        click.echo(f"failure class: {f.kind}\nevidence: {f.evidence}\nsuggestion: {f.suggestion}")
        tail = log_tail(outcome.run_dir)
        click.echo("log tail:\n  " + "\n  ".join(tail))
    if s.state != "succeeded":
        raise SystemExit(1 if s.state == "failed" else 130)


@click.command("run")
@click.argument("recipe")
@run_options
def run(recipe, **options) -> None:
    """Train one recipe with sd-scripts in a new run directory.

    Example: gaze run sdxl-standard --dataset ~/data/fashion --model ~/models/sd_xl_base_1.0.safetensors
    """
    from wrapper.runs.train import start_run

    ((_, resolved, request),) = _requests([recipe], **options)
    _report_outcome(start_run(resolved, request, log=click.echo, on_line=ProgressPrinter()))


@click.command("resume")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def resume(run_dir: Path) -> None:
    """Continue an interrupted or failed run from its newest saved state.

    Example: gaze resume runs/sdxl-standard/20260101T120000Z-a1b2c3
    """
    from wrapper.runs.resume import resume_run

    _report_outcome(resume_run(run_dir, log=click.echo, on_line=ProgressPrinter()))


def _queue(specs: list[str], options: dict) -> None:
    from wrapper.runs.queue import format_table, run_queue
    from wrapper.runs.train import start_run

    def start(planned: tuple):
        _, recipe, request = planned
        return start_run(recipe, request, log=click.echo, on_line=ProgressPrinter())

    rows = run_queue(_requests(specs, **options), start, log=click.echo, label=lambda planned: planned[0])
    click.echo("\n" + format_table(rows))
    if any(r.state != "succeeded" for r in rows):
        raise SystemExit(1)


@click.command("queue")
@click.argument("recipes", nargs=-1, required=True)
@run_options
def queue(recipes: tuple[str, ...], **options) -> None:
    """Train several recipes one after another, then print a table of the results.

    Example: gaze queue sd15-standard sd15-uncropped sd15-standard+crop-flip
    """
    _queue(list(recipes), options)


@click.command("sweep")
@click.argument("base")
@click.argument("modifiers", nargs=-1, required=True)
@run_options
def sweep(base: str, modifiers: tuple[str, ...], **options) -> None:
    """Train a baseline and the baseline with each modifier, one after another.

    Example: gaze sweep sd15-standard no-bucket crop-flip high-lr=3e-4 caption-dropout
    """
    from wrapper.recipe.registry import sweep as expand

    _queue(expand(base, modifiers), options)


@click.command("demo")
@click.option("--family", type=click.Choice(FAMILIES), default="sd15", show_default=True)
@click.option("--runs-dir", metavar="DIR", default="runs", show_default=True)
@click.option("--cache-dir", metavar="DIR", default=".cache/demo", show_default=True,
              help="Where the random-weight model, tokenizers and synthetic dataset are built.")
@click.option("--sd-scripts", "sd_scripts", metavar="DIR", help="sd-scripts checkout.")
def demo(family: str, runs_dir: str, cache_dir: str, sd_scripts: str | None) -> None:
    """Run the whole job offline: random-weight model, synthetic photos, a short real training, a report.

    Example: gaze demo --family sdxl
    """
    from wrapper.demo.assets import ensure_demo_assets
    from wrapper.kohya.checkout import ensure_checkout
    from wrapper.runs.train import RunRequest, start_run

    checkout = ensure_checkout(sd_scripts)
    click.echo(f"sd-scripts: {checkout}")
    assets = ensure_demo_assets(Path(cache_dir), family, log=click.echo)
    recipe = current_registry().resolve(f"{family}-smoke")
    request = RunRequest(
        dataset=assets.dataset_dir,
        model=assets.model_path,
        runs_dir=Path(runs_dir),
        cache_dir=Path(cache_dir),
        checkout=checkout,
        tokenizer_cache_dir=assets.tokenizer_cache_dir,
    )
    outcome = start_run(recipe, request, log=click.echo, on_line=ProgressPrinter())
    if outcome.status.state == "succeeded":
        from wrapper.reports.run import write_report

        paths = write_report(outcome.run_dir).paths
        html = next((p for p in paths if p.suffix == ".html"), paths[0] if paths else None)
        click.echo(f"report: {html}")
    _report_outcome(outcome)


COMMANDS = [run, resume, queue, sweep, demo]
