"""Commands about recipes and their configs: recipes, show, config, validate, import."""

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
    for line, warn in sample_token_lines(resolved):
        click.secho(line, fg="yellow" if warn else None, err=warn)


def sample_token_lines(recipe) -> list[tuple[str, bool]]:
    """(line, is a warning) for each sample prompt over 75 CLIP tokens: the trainer reads 225 of them."""
    from wrapper.dataset.tokens import count_tokens
    from wrapper.kohya.render import SAMPLE_MAX_TOKENS

    lines = []
    for i, p in enumerate(recipe.sampling.prompts, start=1):
        for what, text in (("prompt", p.prompt), ("negative prompt", p.negative)):
            count = count_tokens(text) if text else None
            if count is None or count.tokens <= 75:
                continue
            line = f"sample {what} {i}: {count.tokens} CLIP tokens"
            lost = count.cut.get(SAMPLE_MAX_TOKENS)
            if lost:
                lines.append((f"warning: {line}; sd-scripts' sampling reads the first {SAMPLE_MAX_TOKENS} and "
                              f"loses: {lost}", True))
            else:
                lines.append((f"{line} (sd-scripts' sampling reads up to {SAMPLE_MAX_TOKENS}: all of it)", False))
    return lines


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


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="FILE...")
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=Path("my_recipes.py"), show_default=True,
              help="The recipe module to write (a new file).")
@click.option("--name", help="The recipe's name (default: from the file name); with one configuration only.")
@click.option("--family", type=click.Choice(["sd15", "sdxl"]),
              help="The model family of an sd-scripts config, when neither its model nor its arguments tell.")
def import_config(files: tuple[Path, ...], out_file: Path, name: str | None, family: str | None) -> None:
    """Turn kohya_ss presets or sd-scripts configs into gaze recipes.

    Each kohya_ss .json (a LoRA preset or a saved configuration) becomes one recipe; .toml files are one
    sd-scripts config.toml with its dataset.toml. Every key is listed: set in the recipe, passed on as
    extra_args, a machine path for gaze.toml, decided by gaze, or not representable (with the reason).

    Example: gaze import "SDXL - LoRA AI_characters standard v1.1.json" --out my_recipes.py
    """
    from wrapper.files import write_atomic
    from wrapper.kohya.recipe_module import ABSENT, module_text, note_lines, read_files, recipe_name, settings_lines
    from wrapper.settings import load_settings

    if out_file.exists():
        raise ConfigError(f"option --out: {out_file} exists; choose a new file (nothing was written)")
    imports = read_files(list(files), family)
    if name and len(imports) > 1:
        raise ConfigError(f"option --name: {len(imports)} configurations are imported; each is named after its file")
    settings = load_settings()
    registry = current_registry(settings)
    entries = [_import_entry(item, name or recipe_name(item.sources[0].name), registry) for item in imports]
    text = module_text(entries)
    _check_module(text, out_file, registry)
    write_atomic(out_file, text)
    for item, (_, recipe, _, _, variable) in zip(imports, entries, strict=True):
        click.echo(f"\n{recipe}: from {item.kind} {', '.join(map(str, item.sources))}, derived from {variable}")
        for line in [*note_lines(item.notes), ABSENT[item.kind]]:
            click.echo(f"  {line}")
    lines = [f"recipes = {json.dumps(str(out_file))}"]
    for item in imports:
        lines += [line for line in settings_lines(item.settings) if line not in lines]
    click.echo(f"\nwrote {out_file} ({len(entries)} recipe(s)); put in gaze.toml:")
    click.echo("\n".join(f"  {line}" for line in lines))
    if settings.recipes and settings.recipes.resolve() != out_file.resolve():
        click.secho(f"note: {settings.file} already names {settings.recipes}; gaze reads one recipe file, so merge "
                    "the two", fg="yellow", err=True)
    click.echo(f"then: gaze config {entries[0][1]} --out configs/{entries[0][1]}")


def _import_entry(item, name: str, registry) -> tuple:
    """(import, name, description, baseline module, baseline variable) with the nearest built-in baseline:
    the one of the same family from which the imported values differ least."""
    import recipes.standard as standard
    from wrapper.recipe import evolve
    from wrapper.recipe.diff import flat_diff

    if name in registry.recipes or name in registry.modifiers:
        raise ConfigError(f"recipe name {name!r} is taken; pass --name NAME")
    candidates = [r for r in standard.BASELINES if r.family == item.family]

    def distance(base) -> int:
        return len(flat_diff(base.to_dict(), evolve(base, **item.groups).to_dict()))

    base = min(candidates, key=distance)
    variable = next(k for k, v in vars(standard).items() if v is base)
    comment = f" Its comment: {item.comment}" if item.comment else ""
    description = (f"Imported from {item.kind} {item.sources[0].name} by `gaze import`.{comment}\n\n"
                   f"Derived from {base.name}, every value of the source set explicitly; the keys it could not "
                   "carry are listed above this recipe in its file.")
    return item, name, description, "recipes.standard", variable


def _check_module(text: str, out_file: Path, registry) -> None:
    """Load the module as gaze will and render each recipe with the rules sd-scripts enforces at run time."""
    import tempfile

    from wrapper.errors import collect
    from wrapper.kohya import configs
    from wrapper.kohya.render import Places
    from wrapper.recipe.registry import Registry, load_recipe_file

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / out_file.name).write_text(text, encoding="utf-8")
        scratch = Registry(dict(registry.recipes), dict(registry.modifiers), dict(registry.targets))
        names = load_recipe_file(scratch, folder / out_file.name)
        places = Places(image_dir=folder / "images", model=folder / "model.safetensors", output_dir=folder / "output",
                        logging_dir=folder / "logs", sample_prompts=folder / configs.PROMPTS_FILE, output_name="lora")
        for name in names:
            where = f"the imported recipe {name!r} would not run (nothing was written)"
            try:
                rendered = configs.render(scratch.recipes[name], places, folder)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            collect(configs.check(rendered.script, rendered.arguments, rendered.dataset, checkout=None,
                                  where=Path(name)), ConfigError, where)


COMMANDS = [list_recipes, show, config, validate, import_config]
