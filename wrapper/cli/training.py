"""Commands that train: run, resume, queue, sweep, demo."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from wrapper.cli.recipes import current_registry

PROGRESS = re.compile(
    r"steps:\s+(\d+)%\|.*?\|\s*(\d+)/(\d+)\s*\[([^\]<]*)<?([^\],]*),?\s*([^\],]*)"
    r"(?:,\s*avr_loss=([\d.eE+-]+|nan))?"
)


class ProgressPrinter:
    """Echo the trainer's output, turning its progress bar into one compact, updating line."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.last_step: str | None = None

    def __call__(self, line: str) -> None:
        match = PROGRESS.search(line)
        if not match:
            if self.last_step is not None and self.tty:
                self.stream.write("\n")
            self.last_step = None if self.tty else self.last_step
            if line.strip():
                self.stream.write(line + "\n")
            self.stream.flush()
            return
        _, step, total, elapsed, _, speed, loss = match.groups()
        if step == self.last_step:
            return
        self.last_step = step
        text = f"step {step}/{total}  loss {loss or '-'}  {speed.strip() or '-'}  elapsed {elapsed.strip()}"
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


def _starter(dataset, model, runs_dir, gpus, threads, sd_scripts):
    """A function spec -> Outcome that checks, prepares and launches one run."""
    from wrapper.kohya.checkout import find_checkout
    from wrapper.settings import dataset_for, load_settings, model_for
    from wrapper.training import RunRequest, start_run

    settings = load_settings()
    registry = current_registry(settings)
    checkout = find_checkout(sd_scripts)

    def start(spec: str):
        recipe = registry.resolve(spec)
        request = RunRequest(
            dataset=dataset_for(settings, dataset),
            model=model_for(settings, recipe, model),
            runs_dir=Path(runs_dir) if runs_dir else settings.runs_dir,
            cache_dir=settings.cache_dir,
            checkout=checkout,
            tokenizer_cache_dir=settings.tokenizer_cache_dir,
            gpus=gpus,
            threads=threads,
        )
        return start_run(recipe, request, log=click.echo, on_line=ProgressPrinter())

    return start


def _report_outcome(outcome) -> None:
    s = outcome.status
    color = {"succeeded": "green", "interrupted": "yellow"}.get(s.state, "red")
    click.secho(f"{s.state}: {outcome.run_dir} ({outcome.duration_s:.0f} s)", fg=color)
    for note in outcome.notes:
        click.echo(note)
    if outcome.failure:
        f = outcome.failure
        click.echo(f"failure class: {f.kind}\nevidence: {f.evidence}\nsuggestion: {f.suggestion}")
        tail = (outcome.run_dir / "train.log").read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
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
    _report_outcome(_starter(**options)(recipe))


@click.command("resume")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def resume(run_dir: Path) -> None:
    """Continue an interrupted or failed run from its newest saved state.

    Example: gaze resume runs/sdxl-standard/20260101T120000Z-a1b2c3
    """
    from wrapper.resume import resume_run

    _report_outcome(resume_run(run_dir, log=click.echo, on_line=ProgressPrinter()))


def _queue(specs: list[str], options: dict) -> None:
    from wrapper.queue import format_table, run_queue

    start = _starter(**options)
    rows = run_queue(specs, start, log=click.echo)
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
    from wrapper.registry import sweep as expand

    _queue(expand(base, modifiers), options)


@click.command("demo")
@click.option("--family", type=click.Choice(["sd15", "sdxl"]), default="sd15", show_default=True)
@click.option("--runs-dir", metavar="DIR", default="runs", show_default=True)
@click.option(
    "--cache-dir",
    metavar="DIR",
    default=".cache/demo",
    show_default=True,
    help="Where the random-weight model, tokenizers and synthetic dataset are built.",
)
@click.option("--sd-scripts", "sd_scripts", metavar="DIR", help="sd-scripts checkout.")
def demo(family: str, runs_dir: str, cache_dir: str, sd_scripts: str | None) -> None:
    """Run the whole job offline: random-weight model, synthetic photos, a short real training, a report.

    Example: gaze demo --family sdxl
    """
    from wrapper.kohya.checkout import ensure_checkout
    from wrapper.synth import ensure_demo_assets
    from wrapper.training import RunRequest, start_run

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
        from wrapper.report import write_report

        paths = write_report(outcome.run_dir)
        html = next((p for p in paths if p.suffix == ".html"), paths[0] if paths else None)
        click.echo(f"report: {html}")
    _report_outcome(outcome)


COMMANDS = [run, resume, queue, sweep, demo]
