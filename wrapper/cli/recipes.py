"""Commands about recipes and their configs: recipes, show, config, validate."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import click

from wrapper.errors import ConfigError, TrainerNotFound


def current_registry(settings=None):
    """Built-in recipes plus the user's own recipe file, if the settings name one."""
    from recipes import load_registry
    from wrapper.settings import load_settings

    return load_registry((settings or load_settings()).recipes)


def checkout_or_table(sd_scripts: str | None, use_table: bool):
    """The sd-scripts checkout to check against, or None for the committed table."""
    from wrapper.kohya.checkout import find_checkout, missing_train_extra

    if use_table:
        return None
    try:
        checkout = find_checkout(sd_scripts)
    except TrainerNotFound:
        if sd_scripts or os.environ.get("SD_SCRIPTS_DIR"):
            raise
        return None
    if (missing := missing_train_extra()) is not None:
        click.secho(f"warning: {missing}; checking against the committed sd-scripts table instead", fg="yellow",
                    err=True)
        return None
    return checkout


sd_scripts_option = click.option(
    "--sd-scripts",
    "sd_scripts",
    metavar="DIR",
    help="Check against this sd-scripts checkout (default: $SD_SCRIPTS_DIR, then vendor/sd-scripts).",
)
table_option = click.option(
    "--table",
    "use_table",
    is_flag=True,
    help="Check against the committed sd-scripts v0.10.1 argument table even when a checkout exists.",
)


@click.command("recipes")
def list_recipes() -> None:
    """List the built-in recipes and modifiers.

    Example: gaze recipes
    """
    registry = current_registry()
    for recipe in registry.recipes.values():
        click.echo(f"{recipe.name:<18} {inspect.cleandoc(recipe.description).splitlines()[0]}")
    click.echo("\nmodifiers (append with +, e.g. sd15-standard+no-bucket+high-lr=3e-4):")
    for m in registry.modifiers.values():
        value = f"={m.default}" if m.default else ""
        kind = "glitch" if m.glitch else "tweak"
        click.echo(f"  {m.name + value:<26} {kind:<6} {m.help}")
    click.echo("\nmake targets:")
    for target, spec in registry.targets.items():
        click.echo(f"  {target:<26} {spec}")


@click.command("show")
@click.argument("recipe")
@click.option("--json", "as_json", is_flag=True, help="Print the resolved recipe as JSON.")
def show(recipe: str, as_json: bool) -> None:
    """Show a resolved recipe and what differs from its baseline.

    Example: gaze show sd15-standard+high-lr=3e-4
    """
    from wrapper.recipe.diff import flat_diff, flatten_dict

    registry = current_registry()
    resolved = registry.resolve(recipe)
    if as_json:
        click.echo(json.dumps(resolved.to_dict(), indent=2))
        return
    click.echo(f"{resolved.name} ({resolved.family})")
    click.echo(inspect.cleandoc(resolved.description))
    if resolved.glitches:
        click.echo(f"\ndeliberate glitches: {', '.join(resolved.glitches)}")
    if resolved.baseline:
        click.echo(f"\ndiffers from {resolved.baseline}:")
        for key, (old, new) in flat_diff(
            registry.recipes[resolved.baseline].to_dict(), resolved.to_dict()
        ).items():
            if key not in ("name", "description", "baseline", "modifiers", "glitches"):
                click.echo(f"  {key}: {old!r} -> {new!r}")
    else:
        click.echo("")
        for key, value in flatten_dict(resolved.to_dict()).items():
            if key not in ("name", "description") and not key.startswith("sampling.prompts"):
                click.echo(f"  {key} = {value!r}")


@click.command("config")
@click.argument("recipe")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="New or empty directory.")
@click.option("--dataset", metavar="DIR", help="Image folder (default: settings).")
@click.option("--model", metavar="PATH", help="Base checkpoint (default: settings).")
@sd_scripts_option
@table_option
def config(
    recipe: str,
    out_dir: Path,
    dataset: str | None,
    model: str | None,
    sd_scripts: str | None,
    use_table: bool,
) -> None:
    """Write a recipe's dataset.toml, config.toml and sample_prompts.txt, checked.

    Example: gaze config sd15-standard+no-bucket+high-lr=3e-4 --out configs/nobucket --dataset ~/data/fashion
    """
    from wrapper.kohya import configs
    from wrapper.runs.train import render_configs, request_for
    from wrapper.settings import load_settings

    settings = load_settings()
    resolved = current_registry(settings).resolve(recipe)
    checkout = checkout_or_table(sd_scripts, use_table)
    configs.check_out_dir(out_dir)
    request = request_for(resolved, settings, checkout or Path("."), dataset=dataset, model=model)
    rendered = render_configs(resolved, request, out_dir, log=click.echo)
    written = configs.write(rendered, out_dir, checkout=checkout)
    against = f"sd-scripts at {checkout}" if checkout else "the committed sd-scripts v0.10.1 table"
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"checked against {against}: {rendered.script} accepts these configs")


@click.command("validate")
@click.argument("config_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--script", type=click.Choice(["sd15", "sdxl", "train_network.py", "sdxl_train_network.py"]),
              help="Check against this trainer's rules (default: gaze's header, else the model's family, else "
                   "SDXL-only arguments).")
@sd_scripts_option
@table_option
def validate(config_dir: Path, script: str | None, sd_scripts: str | None, use_table: bool) -> None:
    """Check a folder of sd-scripts configs (dataset.toml, config.toml, sample_prompts.txt).

    Example: gaze validate configs/nobucket --script sdxl
    """
    from wrapper.errors import collect
    from wrapper.kohya.configs import validate_dir

    checkout = checkout_or_table(sd_scripts, use_table)
    checked_as, problems = validate_dir(config_dir, checkout=checkout, script=script)
    collect(problems, ConfigError, f"{config_dir} is not valid for sd-scripts (checked as {checked_as})")
    against = f"sd-scripts at {checkout}" if checkout else "the committed sd-scripts v0.10.1 table"
    click.echo(f"{config_dir}: valid for {checked_as}, checked against {against}")


COMMANDS = [list_recipes, show, config, validate]
