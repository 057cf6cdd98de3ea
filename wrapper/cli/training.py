"""Commands that train: run, resume, queue, sweep, demo."""

from __future__ import annotations

import itertools
import os
import sys
import threading
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


class PrefixPrinter:
    """One run's lines among several running at once, each prefixed with its name (honcho-style), its
    progress bar condensed to one line per step."""

    lock = threading.Lock()  # one line at a time from every run's thread

    def __init__(self, name: str, width: int, color: str, stream=None) -> None:
        self.prefix = click.style(f"{name:<{width}} | ", fg=color)
        self.stream = stream or sys.stdout
        self.last_step: int | None = None

    def __call__(self, line: str) -> None:
        p = parse_progress(line)
        if p is not None:
            if p.step == self.last_step:
                return
            self.last_step = p.step
            line = f"step {p.step}/{p.total}  loss {p.loss or '-'}  {p.speed or '-'}  elapsed {p.elapsed}"
        if not line.strip():
            return
        with self.lock:
            click.echo(self.prefix + line, file=self.stream)


COLORS = ("cyan", "yellow", "green", "magenta", "blue", "red")


class _Headed(ProgressPrinter):
    """A queue's run, one after another: its heading when it starts, then its lines."""

    def __init__(self, heading: str) -> None:
        super().__init__()
        self.heading: str | None = heading

    def __call__(self, line: str) -> None:
        if self.heading:
            self.stream.write(f"\n{self.heading}\n")
            self.heading = None
        super().__call__(line)


def _trackers(_ctx, _param, values: tuple[str, ...]) -> tuple[str, ...] | None:
    """--log-with, repeated or comma-separated, checked like `trackers` in gaze.toml; None: the settings'."""
    from wrapper.errors import GazeError
    from wrapper.settings import check_trackers

    if not values:
        return None
    try:
        return check_trackers([name for value in values for name in value.split(",")], "--log-with")
    except GazeError as exc:
        raise click.BadParameter(str(exc)) from None


log_with_option = click.option(
    "--log-with", "log_with", multiple=True, metavar="TRACKER", callback=_trackers,
    help="Trackers: tensorboard (always on) and wandb, repeated or comma-separated; W&B reads its key from "
         "WANDB_API_KEY [default: trackers in gaze.toml].")


def run_options(f):
    f = log_with_option(f)
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


def _requests(specs: list[str], dataset, model, runs_dir, gpus, threads, sd_scripts, log_with=None) -> list:
    """(spec, recipe, RunRequest) for each spec, every name and path checked before any run starts."""
    from wrapper.kohya.checkout import find_checkout, require_trackers, require_train_extra
    from wrapper.runs.train import request_for
    from wrapper.settings import load_settings

    settings = load_settings()
    registry = current_registry(settings)
    checkout = find_checkout(sd_scripts)
    require_train_extra()
    require_trackers(log_with or settings.trackers)
    recipes = [registry.resolve(spec) for spec in specs]
    return [
        (spec, recipe, request_for(recipe, settings, checkout, dataset=dataset, model=model, runs_dir=runs_dir,
                                   gpus=gpus, threads=threads, trackers=log_with))
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
    from wrapper.cli.runs import index_refreshed
    from wrapper.runs.train import start_run

    ((_, resolved, request),) = _requests([recipe], **options)
    with index_refreshed(request.runs_dir):
        _report_outcome(start_run(resolved, request, log=click.echo, on_line=ProgressPrinter()))


@click.command("resume")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@log_with_option
def resume(run_dir: Path, log_with: tuple[str, ...] | None) -> None:
    """Continue an interrupted or failed run from its newest saved state.

    Example: gaze resume runs/sdxl-standard/20260101T120000Z-a1b2c3

    The run keeps the trackers it was launched with (run.json) unless --log-with says otherwise.
    """
    from wrapper.cli.runs import index_refreshed, runs_dir_of
    from wrapper.runs.resume import resume_run

    with index_refreshed(runs_dir_of(run_dir)):
        _report_outcome(resume_run(run_dir, log=click.echo, on_line=ProgressPrinter(), trackers=log_with))


SLURM_FLAGS = {"max_parallel": "--max-parallel", "partition": "--partition", "time_min": "--time-min",
               "cpus_per_run": "--cpus-per-run", "mem_gb": "--mem-gb", "wait": "--wait"}


def execution_options(f):
    """Where the runs of a queue or sweep execute, and how many at once."""
    for option in reversed(
        [
            click.option("--on", "backend", type=click.Choice(["local", "slurm"]),
                         help="Where the runs execute: this machine, or a Slurm cluster as one job array "
                              "(default: `on` in gaze.toml, else local)."),
            click.option("--parallel", type=click.IntRange(1),
                         help="Local: runs at once, each pinned to its own GPU(s) (--gpus each), or on a CPU "
                              "to its share of the cores [default: 1, one after another]."),
            click.option("--gpus-per-run", type=click.IntRange(0),
                         help="Local: a pool of every visible GPU, K per run. Slurm: the GPUs each task asks "
                              "for (0: CPU only) [default: [slurm] gpus_per_run]."),
            click.option("--max-parallel", type=click.IntRange(1),
                         help="Slurm: array tasks at once [default: [slurm] max_parallel, else all]."),
            click.option("--partition", help="Slurm partition [default: [slurm] partition]."),
            click.option("--time-min", type=click.IntRange(1),
                         help="Slurm time limit of each run's attempt, in minutes; a run that reaches it is "
                              "requeued and continues [default: [slurm] time_min]."),
            click.option("--cpus-per-run", type=click.IntRange(1), help="Slurm CPUs per run."),
            click.option("--mem-gb", type=click.IntRange(1), help="Slurm memory per run, in GB."),
            click.option("--wait", is_flag=True, help="Slurm: follow the runs until they end, then print the table."),
            click.option("--seeds", metavar="N|S1,S2,...",
                         help="Replicates: run every recipe with N training seeds (the recipe's seed, +1, ...) "
                              "or with the seeds listed; the prepared images stay the same."),
        ]
    ):
        f = option(f)
    return f


def _check_flags(backend: str, execution: dict, gpus: int) -> None:
    given = [flag for key, flag in SLURM_FLAGS.items() if execution[key] not in (None, False)]
    if backend == "local" and given:
        raise click.UsageError(f"{given[0]} is for --on slurm")
    if backend == "slurm" and execution["parallel"] is not None:
        raise click.UsageError("--parallel is for --on local; on Slurm, --max-parallel caps the tasks at once")
    if backend == "slurm" and gpus != 1:
        raise click.UsageError("on Slurm, --gpus-per-run (or [slurm] gpus_per_run) sets each run's GPUs, not --gpus")
    if backend == "local" and execution["gpus_per_run"] is not None and gpus != 1:
        raise click.UsageError("give --gpus (one run's GPUs) or --gpus-per-run (a pool of runs), not both")
    if backend == "local" and execution["gpus_per_run"] == 0:
        raise click.UsageError("--gpus-per-run 0 (CPU only) is for --on slurm; on this machine use --parallel N")


def _queue(specs: list[str], options: dict, *, kind: str, baseline: str | None = None,
           variants: tuple[str, ...] = ()) -> None:
    """The runs of `queue` and `sweep`: a sweep folder, then the local pool or one Slurm job array."""
    from wrapper.cli.runs import index_refreshed
    from wrapper.settings import load_settings

    execution = {key: options.pop(key) for key in ("backend", "parallel", "gpus_per_run", *SLURM_FLAGS)}
    seeds = options.pop("seeds")
    if seeds is not None:
        from wrapper.runs.sweeps import seeds_from

        seeds_from(seeds, 0)  # a bad --seeds is refused before anything is looked up
    settings = load_settings()
    backend = execution["backend"] or settings.on
    _check_flags(backend, execution, options["gpus"])
    planned = _replicates(_requests(specs, **options), seeds)
    runs_dir = planned[0][2].runs_dir
    with index_refreshed(runs_dir):
        _start(planned, runs_dir, backend, execution, options, settings, seeds, kind=kind, baseline=baseline,
               variants=variants)


def _start(planned: list, runs_dir: Path, backend: str, execution: dict, options: dict, settings, seeds: str | None,
           *, kind: str, baseline: str | None, variants: tuple[str, ...]) -> None:
    from wrapper.runs.sweeps import create_sweep

    if backend == "slurm":
        resources = _slurm_resources(settings.slurm, execution)
        parallel = resources.max_parallel or len(planned)
        sweep_dir, record = create_sweep(runs_dir, [(s, r) for s, r, _ in planned], kind=kind, backend="slurm",
                                         parallel=parallel, baseline=baseline, variants=variants,
                                         gpus_per_run=resources.gpus_per_run, resources=_as_dict(resources))
        items = _pool_items(planned, record)
        _on_slurm(sweep_dir, items, resources, parallel, execution["wait"])
        return
    slots = _local_slots(planned, execution, options)
    if execution["gpus_per_run"]:
        planned = [(s, r, _with_gpus(q, execution["gpus_per_run"])) for s, r, q in planned]
    sweep_dir, record = create_sweep(runs_dir, [(s, r) for s, r, _ in planned], kind=kind, backend="local",
                                     parallel=len(slots), baseline=baseline, variants=variants,
                                     gpus_per_run=execution["gpus_per_run"])
    items = _pool_items(planned, record)
    _on_local(sweep_dir, items, slots)


def _replicates(planned: list, seeds: str | None) -> list:
    """Each (spec, recipe, request) once per training seed, seeds counted from each recipe's own."""
    from wrapper.runs.sweeps import seeds_from, with_seeds

    if seeds is None:
        return planned
    return [(spec, seeded, request) for spec, recipe, request in planned
            for seeded in with_seeds(recipe, seeds_from(seeds, recipe.training.seed))]


def _pool_items(planned: list, record) -> list:
    """What the pool runs: each member, named with its seed when there are replicates."""
    from wrapper.runs.pool import PoolItem
    from wrapper.runs.sweeps import member_label

    return [PoolItem(member_label(m, record), r, q, Path(m.run_dir))
            for (_, r, q), m in zip(planned, record.members, strict=True)]


def _with_gpus(request, gpus: int):
    import dataclasses

    return dataclasses.replace(request, gpus=gpus)


def _as_dict(resources) -> dict:
    import dataclasses

    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(resources).items()}


def _local_slots(planned: list, execution: dict, options: dict) -> list:
    from wrapper.runs.pool import plan_slots, visible_gpus

    parallel, per_run = execution["parallel"], execution["gpus_per_run"]
    pooled = (parallel or 1) > 1 or per_run is not None
    gpus = visible_gpus(planned[0][2].checkout) if pooled else []
    return plan_slots(len(planned), parallel=parallel, gpus_per_run=per_run, per_run=per_run or options["gpus"],
                      gpus=gpus, cores=os.cpu_count() or 1)


def _on_local(sweep_dir: Path, items: list, slots: list) -> None:
    from wrapper.runs.pool import run_pool
    from wrapper.runs.queue import format_table

    click.echo(f"sweep: {sweep_dir}")
    if len(slots) == 1 and not slots[0].pinned:
        counter = itertools.count(1)
        sink_for_member = lambda spec: _Headed(f"=== [{next(counter)}/{len(items)}] {spec}")  # noqa: E731
    else:
        where = ", ".join(f"GPU {','.join(s.gpus)}" if s.gpus else f"{s.threads} thread(s)" for s in slots)
        click.echo(f"{len(items)} runs, {len(slots)} at once ({where})")
        width = max(len(item.spec) for item in items)
        colors = dict(zip([i.spec for i in items], itertools.cycle(COLORS), strict=False))
        sink_for_member = lambda spec: PrefixPrinter(spec, width, colors[spec])  # noqa: E731
    rows = run_pool(items, slots, sink_for=sink_for_member, sweep=str(sweep_dir))
    click.echo("\n" + format_table(rows))
    if any(r.state != "succeeded" for r in rows):
        raise SystemExit(1)


def _slurm_resources(base, execution: dict):
    import dataclasses

    changes = {key: execution[key] for key in ("partition", "time_min", "gpus_per_run", "cpus_per_run", "mem_gb",
                                               "max_parallel") if execution[key] is not None}
    return dataclasses.replace(base, **changes)


def _on_slurm(sweep_dir: Path, items: list, resources, parallel: int, wait: bool) -> None:
    from wrapper.runs import layout as runs
    from wrapper.runs.queue import format_table
    from wrapper.runs.slurm import array_of, check_before_submitting, require_submitit, submit_array
    from wrapper.runs.sweeps import SLURM_FOLDER, with_submission
    from wrapper.runs.watch import format_views, sweep_rows, wait_for_sweep

    require_submitit()
    click.echo(f"sweep: {sweep_dir}")
    good = check_before_submitting(items, click.echo)
    if good:
        try:
            ids = submit_array(sweep_dir / SLURM_FOLDER, good, resources, name=f"gaze-{sweep_dir.name}",
                               parallel=parallel)
        except BaseException as exc:
            for item in good:
                runs.write_status(item.run_dir, runs.Status("failed", ended_at=runs.utc_now(),
                                                            failure_class="configuration",
                                                            message=f"not submitted: {exc}"))
            raise
        with_submission(sweep_dir, array_of(ids[0]), {str(i.run_dir): j for i, j in zip(good, ids, strict=True)})
        click.echo(f"submitted Slurm job array {array_of(ids[0])}: {len(ids)} task(s), at most "
                   f"{min(parallel, len(ids))} at once, {resources.time_min} min each")
    click.echo(f"follow: gaze status {sweep_dir}\nstop:   gaze cancel {sweep_dir}")
    if wait:
        wait_for_sweep(sweep_dir, on_change=lambda views: click.echo("\n" + format_views(views)))
    if wait or not good:
        rows = sweep_rows(sweep_dir)
        click.echo("\n" + format_table(rows))
        if any(r.state != "succeeded" for r in rows):
            raise SystemExit(1)


@click.command("queue")
@click.argument("recipes", nargs=-1, required=True)
@run_options
@execution_options
def queue(recipes: tuple[str, ...], **options) -> None:
    """Train several recipes, one after another or several at once, then print a table of the results.

    Example: gaze queue sd15-standard sd15-uncropped sd15-standard+crop-flip --parallel 2

    The queue gets a folder of its own (runs/sweeps/<time>-<id>/sweep.json) and each run its run
    folder up front, so `gaze status` shows them all before they start. `--on slurm` submits them
    as one Slurm job array instead (see the README's "Running on many GPUs or a cluster").
    """
    _queue(list(recipes), options, kind="queue")


@click.command("sweep")
@click.argument("base")
@click.argument("modifiers", nargs=-1, required=True)
@run_options
@execution_options
def sweep(base: str, modifiers: tuple[str, ...], **options) -> None:
    """Train a baseline and the baseline with each modifier, then print a table of the results.

    Example: gaze sweep sd15-standard no-bucket crop-flip high-lr=3e-4 caption-dropout --on slurm

    Runs one after another unless --parallel N (local) or --on slurm says otherwise; the sweep's
    folder (runs/sweeps/<time>-<id>/) records its design, its members and where they run.
    """
    from wrapper.recipe.registry import sweep as expand

    _queue(expand(base, modifiers), options, kind="sweep", baseline=base, variants=modifiers)


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
    from wrapper.cli.runs import index_refreshed

    with index_refreshed(request.runs_dir):
        outcome = start_run(recipe, request, log=click.echo, on_line=ProgressPrinter())
        if outcome.status.state == "succeeded":
            from wrapper.reports.run import write_report

            paths = write_report(outcome.run_dir).paths
            html = next((p for p in paths if p.suffix == ".html"), paths[0] if paths else None)
            click.echo(f"report: {html}")
        _report_outcome(outcome)


COMMANDS = [run, resume, queue, sweep, demo]
