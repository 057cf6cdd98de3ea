"""Render a recipe's three sd-scripts files, check them, and write them (all or nothing)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wrapper.errors import ConfigError, RunError, collect
from wrapper.files import write_atomic
from wrapper.kohya import interface, prompt_lines, rules, tomlio
from wrapper.kohya.render import (
    SCRIPTS,
    Places,
    render_arguments,
    render_dataset,
    render_prompts,
    script_for,
)
from wrapper.recipe import Recipe, recipe_problems

DATASET_FILE, ARGUMENTS_FILE, PROMPTS_FILE = "dataset.toml", "config.toml", "sample_prompts.txt"
SCRIPT_MARK = "# script: "


@dataclass(frozen=True)
class Rendered:
    """The three files of one recipe, as data and as text."""

    script: str
    dataset: dict[str, Any]
    arguments: dict[str, dict[str, Any]]
    prompts: str
    header: str

    def texts(self) -> dict[str, str]:
        return {
            DATASET_FILE: self.header + tomlio.dumps(self.dataset),
            ARGUMENTS_FILE: self.header + tomlio.dumps(self.arguments),
            PROMPTS_FILE: self.prompts,
        }


def render(recipe: Recipe, places: Places, config_dir: Path) -> Rendered:
    """Every file of a recipe; raises one error listing all recipe problems first."""
    collect(recipe_problems(recipe) + rules.recipe_rules(recipe), ConfigError,
            f"recipe {recipe.name!r} cannot be rendered")
    script = script_for(recipe)
    header = f"# written by gaze from recipe {recipe.name}\n{SCRIPT_MARK}{script}\n"
    if recipe.glitches or recipe.base_model != "default":
        mismatch = [f"mismatched base {recipe.base_model!r}"] if recipe.base_model != "default" else []
        labels = [*recipe.glitches, *mismatch]
        header += f"# deliberate glitches: {', '.join(labels)}\n"
    return Rendered(
        script=script,
        dataset=render_dataset(recipe, places),
        arguments=render_arguments(recipe, places, config_dir / DATASET_FILE),
        prompts=render_prompts(recipe),
        header=header,
    )


def problems(script: str, arguments: dict[str, Any], dataset: dict[str, Any], *, facts: dict[str, Any],
             schema_verdicts: list[str] | None, where: Path) -> list[str]:
    """All problems of an arguments file + dataset config pair against sd-scripts' facts.

    `schema_verdicts` are the checkout's own ConfigSanitizer's verdicts on the dataset config; None
    checks it against the committed schema instead.
    """
    flat = interface.flatten(arguments)
    if schema_verdicts is None:
        found = interface.dataset_problems(dataset, facts["dataset_schema"], str(where / DATASET_FILE),
                                           masked_loss=flat.get("masked_loss") is True)
    else:
        found = [f"{where / DATASET_FILE}: sd-scripts' dataset schema: {e}" for e in schema_verdicts]
    found += interface.argument_problems(flat, facts["scripts"][script], str(where / ARGUMENTS_FILE))
    if not interface.well_shaped(dataset):
        return found  # the run-time rules read subsets: the shape problems above come first
    return found + [f"{where}: {p}" for p in rules.config_problems(flat, dataset, script)]


def check(script: str, arguments: dict[str, Any], dataset: dict[str, Any], *, checkout: Path | None,
          where: Path) -> list[str]:
    """`problems`, asking a checkout (in a child process) or, without one, the committed table."""
    if checkout is None:
        return problems(script, arguments, dataset, facts=interface.committed_interface(), schema_verdicts=None,
                        where=where)
    with tempfile.TemporaryDirectory() as tmp:
        dataset_file = Path(tmp) / DATASET_FILE
        dataset_file.write_text(tomlio.dumps(dataset), encoding="utf-8")
        masked_loss = interface.flatten(arguments).get("masked_loss") is True
        facts, verdicts = interface.ask_checkout(checkout, [dataset_file], masked_loss=masked_loss)
    return problems(script, arguments, dataset, facts=facts, schema_verdicts=verdicts[str(dataset_file)], where=where)


def check_out_dir(out_dir: Path) -> None:
    """Refuse a folder that holds anything: configs are written only into a new or empty one."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir} is not an empty directory; choose a new one (nothing was written)")


def write(rendered: Rendered, out_dir: Path, *, checkout: Path | None) -> list[Path]:
    """Check, then write the three files into an empty (or new) directory; nothing on failure."""
    check_out_dir(out_dir)
    collect(check(rendered.script, rendered.arguments, rendered.dataset, checkout=checkout, where=out_dir),
            ConfigError, "the rendered configs are not valid for sd-scripts (nothing was written)")
    texts = rendered.texts()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in texts.items():
        write_atomic(out_dir / name, text)
        paths.append(out_dir / name)
    return paths


def decide_script(config_text: str, arguments: dict[str, Any], explicit: str | None = None) -> tuple[str, str]:
    """(training script, how it was decided) for a config folder, the way `gaze run` would choose it."""
    from wrapper.kohya import models

    if explicit:
        script = SCRIPTS.get(explicit, explicit)
        if script not in SCRIPTS.values():
            raise ConfigError(f"--script {explicit!r}: expected one of {', '.join([*SCRIPTS, *SCRIPTS.values()])}")
        return script, "as asked (--script)"
    for line in config_text.splitlines():
        if line.startswith(SCRIPT_MARK):
            return line[len(SCRIPT_MARK):].strip(), "from the file's gaze header"
    flat = interface.flatten(arguments)
    model = flat.get("pretrained_model_name_or_path")
    if isinstance(model, str) and Path(model).exists():
        try:
            family = models.checkpoint_family(Path(model))
        except RunError:
            family = None
        if family is not None:
            name = models.CHECKPOINT_FAMILIES[family]
            return SCRIPTS["sdxl" if family == "sdxl" else "sd15"], f"from the model ({name})"
    parsers = interface.committed_interface()["scripts"]
    sdxl_only = sorted(set(flat) & (set(parsers[SCRIPTS["sdxl"]]) - set(parsers[SCRIPTS["sd15"]])))
    if sdxl_only:
        return SCRIPTS["sdxl"], f"from its SDXL-only arguments ({', '.join(sdxl_only[:3])})"
    return SCRIPTS["sd15"], "no SDXL-only argument and no readable model (pass --script sdxl to check it as SDXL)"


def validate_dir(config_dir: Path, *, checkout: Path | None, script: str | None = None) -> tuple[str, list[str]]:
    """(what it was checked as, problems) of a folder holding dataset.toml, config.toml and (optionally)
    sample_prompts.txt."""
    import toml

    problems, loaded = [], {}
    for name in (DATASET_FILE, ARGUMENTS_FILE):
        path = config_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        try:
            loaded[name] = (path.read_text(encoding="utf-8"), toml.load(path))
        except (toml.TomlDecodeError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: not valid TOML for sd-scripts: {exc}")
    if problems:
        return "nothing", problems
    config_text, arguments = loaded[ARGUMENTS_FILE]
    script, reason = decide_script(config_text, arguments, script)
    problems = check(script, arguments, loaded[DATASET_FILE][1], checkout=checkout, where=config_dir)
    prompts = config_dir / PROMPTS_FILE
    if prompts.is_file():
        problems += prompt_file_problems(prompts)
    return f"{script} ({reason})", problems


def prompt_file_problems(path: Path) -> list[str]:
    """Lines of a sample-prompts file that sd-scripts would read differently from what they say."""
    problems = []
    for number, line in prompt_lines.file_lines(path.read_text(encoding="utf-8")):
        prompt = prompt_lines.split_line(line).prompt
        problems += [f"{path}:{number}: prompt {prompt!r} {p.message}" for p in prompt_lines.text_problems(prompt)
                     if p.kind == "option start"]
    return problems
