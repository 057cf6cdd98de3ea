"""The generate command: sweep a grid of inference settings with a run's LoRA, make contact sheets."""

from __future__ import annotations

from pathlib import Path

import click

from wrapper.errors import ConfigError, TrainerNotFound
from wrapper.kohya.gen_img import PRECISIONS

GRID_HELP = (
    "Grid axis as KEY=V1,V2 with KEY one of sampler (dpm++2m, euler, euler_a, ddim, ...), steps (1-1000), "
    "cfg (1-30), negative (on, off), weight (LoRA multiplier, -2 to 2), base (default, or checkpoints named in "
    "gaze.toml [models] or paths: the LoRA on another base of its architecture, labelled mismatched). Repeat "
    "it, or list more KEY=... words after the run directories. Default: sampler=dpm++2m steps=20 cfg=7 "
    "negative=on weight=1 base=default."
)


def split_words(words: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    """Positional words: existing folders and words without '=' are run directories, the rest grid words."""
    runs, grid = [], []
    for word in words:
        if "=" in word and not Path(word).is_dir():
            grid.append(word)
        else:
            runs.append(Path(word))
    return runs, grid


def _axes(text: str | None) -> tuple[str, ...]:
    return tuple(a.strip() for a in text.split(",") if a.strip()) if text else ()


@click.command("generate")
@click.argument("words", nargs=-1, metavar="RUN_DIR... [KEY=V1,V2 ...]")
@click.option("--grid", "grid_words", multiple=True, metavar="KEY=V1,V2", help=GRID_HELP)
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="NAME",
              help="LoRA file of the run: final (default), a step (1000 or step1000), a file name, or all. Repeatable.")
@click.option("--prompts", "prompts_path", type=click.Path(path_type=Path), metavar="FILE",
              help="Prompt file (default: the built-in set, recipes/prompts.txt; copy it to start your own).")
@click.option("--prompt", "prompt_numbers", multiple=True, type=int, metavar="N",
              help="Only the N-th prompt of the file (1-based). Repeatable.")
@click.option("--base", "base", metavar="MODEL|NAME",
              help="Render on this checkpoint instead of the one the LoRA was trained on (a name from gaze.toml "
                   "[models] or a path; same architecture only): a deliberately mismatched base, labelled so.")
@click.option("--glitch", is_flag=True,
              help="The research log's generation-glitch preset: negative prompt off and on, steps 3 to 150, CFG "
                   "1.5 to 30, DPM++ 2M and Euler, on the log's two prompts (grid words replace its axes).")
@click.option("--seeds", default="1", show_default=True, metavar="S1,S2", help="Seeds; every image is seeded.")
@click.option("--size", type=int, help="Image width and height in pixels (default 512 for SD1.5, 1024 for SDXL).")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="Model precision (default fp32 for SD1.5, bf16 for SDXL; fp16 needs a GPU).")
@click.option("--rows", metavar="AXES", help="Sheet row axes, outermost first (default steps,cfg,weight,seed).")
@click.option("--cols", metavar="AXES", help="Sheet column axes (default sampler,negative,source).")
@click.option("--thumb", type=click.IntRange(32, 1024), default=256, show_default=True,
              help="Largest side of an image on a contact sheet, in pixels.")
@click.option("--batch-size", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Images per gen_img.py batch (same steps, CFG and weight).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path),
              help="Output folder (default: a new <first run>/generations/<UTC stamp>-<hex>/).")
@click.option("--sd-scripts", "sd_scripts", metavar="DIR",
              help="sd-scripts checkout (default: $SD_SCRIPTS_DIR, then vendor/sd-scripts).")
@click.option("--yes", is_flag=True, help="Render even when the grid has more than 100 images.")
@click.option("--dry-run", is_flag=True, help="Print the plan and the gen_img.py commands; run nothing.")
@click.option("--quiet", "-q", is_flag=True, help="Show progress only, not gen_img.py's own output.")
@click.option("--metrics", "with_metrics", is_flag=True,
              help="Measure the images right after rendering (as `gaze metrics` does) and show them on the page.")
def generate(
    words: tuple[str, ...],
    grid_words: tuple[str, ...],
    checkpoints: tuple[str, ...],
    prompts_path: Path | None,
    prompt_numbers: tuple[int, ...],
    base: str | None,
    glitch: bool,
    seeds: str,
    size: int | None,
    precision: str | None,
    rows: str | None,
    cols: str | None,
    thumb: int,
    batch_size: int,
    out_dir: Path | None,
    sd_scripts: str | None,
    yes: bool,
    dry_run: bool,
    quiet: bool,
    with_metrics: bool,
) -> None:
    """Render a grid of samplers, steps, CFG, negative prompt and LoRA weight with a run's LoRA.

    One gen_img.py process runs per checkpoint, base and sampler; images, index.json, one contact
    sheet per prompt and generation.html go to a new folder inside the (first) run. Several
    checkpoints (--checkpoint all) or several runs become extra sheet columns. Every prompt's CLIP
    tokens are counted, and gen_img.py reads as many 75-token chunks as the longest needs.

    Example: gaze generate runs/sdxl-standard/20250101T000000Z-abc123 sampler=dpm++2m,euler
    steps=10,20,40 cfg=3,7,12 negative=on,off weight=0.6,1.0 --seeds 1,2 --yes
    """
    from wrapper.generation.generate import check_count, jobs, plan_generation, run_generation
    from wrapper.generation.grid import GLITCH_GRID, GLITCH_PROMPTS, parse_grid, parse_seeds
    from wrapper.settings import load_settings

    run_dirs, positional_grid = split_words(words)
    words_given = [*grid_words, *positional_grid]
    if base is not None:
        if any(w.strip().lower().startswith("base=") for w in words_given):
            raise ConfigError("give the base either as --base or as a base= grid axis, not both")
        words_given.append(f"base={base}")
    grid = parse_grid(words_given, GLITCH_GRID if glitch else None)
    if glitch and not prompts_path and not prompt_numbers:
        prompt_numbers = GLITCH_PROMPTS
    plan = plan_generation(
        run_dirs,
        grid=grid,
        prompts_path=prompts_path,
        checkpoints=checkpoints,
        seeds=parse_seeds(seeds),
        size=size,
        precision=precision,
        prompt_numbers=prompt_numbers,
        models=load_settings().models,
    )
    planned = jobs(plan.cells)
    preset = "the research log's generation-glitch preset: " if glitch else ""
    click.echo(
        f"{preset}{len(plan.cells)} image(s): {len(plan.sources)} checkpoint(s) x {len(plan.prompts)} prompt(s) x "
        f"{plan.grid.size} grid cell(s) x {len(plan.seeds)} seed(s), {plan.size} px, {plan.precision}; "
        f"{len(planned)} gen_img.py process(es)"
    )
    for line in plan.token_lines():
        click.echo(f"  {line}")
    for axis, values in plan.grid.as_dict().items():
        if len(values) > 1 or axis == "base" and values != ["default"]:
            click.echo(f"  {axis}: {', '.join(map(str, values))}")
    if dry_run:
        _print_dry_run(plan, planned, sd_scripts)
        return
    check_count(plan, yes)
    root = run_generation(
        plan,
        out_dir=out_dir,
        checkout=sd_scripts,
        rows=_axes(rows),
        cols=_axes(cols),
        thumb=thumb,
        batch_size=batch_size,
        on_status=lambda m: click.secho(f"gaze: {m}", fg="cyan", err=True),
        on_line=None if quiet else lambda line: click.echo(f"  {line}", err=True),
    )
    from wrapper.runs import layout as runs

    if with_metrics:
        from wrapper.generation.learned import learned_metrics
        from wrapper.generation.measure import generation_items, measure_folder, training_images_of
        from wrapper.settings import load_settings

        measured, _ = measure_folder(root, "generation grid", generation_items(root),
                                     against=training_images_of(plan.sources[0].run_dir),
                                     learned=learned_metrics(load_settings().metrics))
        click.echo(f"metrics: {root / runs.METRICS_JSON} ({len(measured.frame)} images; skipped: "
                   f"{', '.join(measured.skipped) or 'none'})")
    click.echo(f"index: {root / runs.GENERATION_INDEX}\nsheets: {root / 'sheets'}\npage: {root / runs.GENERATION_PAGE}")


def _print_dry_run(plan, planned, sd_scripts: str | None) -> None:
    from wrapper.generation.generate import job_argv, job_label, job_lines
    from wrapper.kohya.checkout import find_checkout

    try:
        checkout = find_checkout(sd_scripts)
    except TrainerNotFound:
        checkout = Path("$SD_SCRIPTS_DIR")
    for number, (source, sampler, cells) in enumerate(planned, start=1):
        argv = job_argv(plan, source, sampler, checkout=checkout, outdir=Path("OUT"),
                        prompts_file=Path(f"OUT/jobs/{number:02d}.txt"))
        label = job_label((source, sampler, cells))
        click.echo(f"\njob {number}: {label}, {len(cells)} image(s)\n  {' '.join(argv)}")
        lines = job_lines(cells)
        for line in lines[:3]:
            click.echo(f"    {line}")
        if len(lines) > 3:
            click.echo(f"    ... {len(lines) - 3} more line(s)")


COMMANDS = [generate]
