"""Render a recipe's three sd-scripts files, check them, and write them (all or nothing)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wrapper.errors import ConfigError, collect
from wrapper.files import write_atomic
from wrapper.kohya import interface, rules, tomlio
from wrapper.kohya.render import (
    Places,
    prompt_text_problems,
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


def check(script: str, arguments: dict[str, Any], dataset: dict[str, Any], *, checkout: Path | None,
          where: Path) -> list[str]:
    """All problems of an arguments file + dataset config pair, against a checkout or the committed table."""
    flat = interface.flatten(arguments)
    if checkout is not None:
        with tempfile.TemporaryDirectory() as tmp:
            dataset_file = Path(tmp) / DATASET_FILE
            dataset_file.write_text(tomlio.dumps(dataset), encoding="utf-8")
            facts, verdicts = interface.ask_checkout(checkout, [dataset_file])
        problems = [f"{where / DATASET_FILE}: sd-scripts' dataset schema: {e}" for e in verdicts[str(dataset_file)]]
    else:
        facts, problems = interface.committed_interface(), []
    parser = facts["scripts"][script]
    problems += interface.argument_problems(flat, parser, str(where / ARGUMENTS_FILE))
    if checkout is None:
        problems += interface.dataset_problems(dataset, facts["dataset_schema"], str(where / DATASET_FILE))
    problems += [f"{where}: {p}" for p in rules.config_problems(flat, dataset, script)]
    return problems


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


def read_script(config_text: str, arguments: dict[str, Any]) -> str:
    for line in config_text.splitlines():
        if line.startswith(SCRIPT_MARK):
            return line[len(SCRIPT_MARK):].strip()
    flat = interface.flatten(arguments)
    sdxl = any(k.startswith("cache_text_encoder_outputs") for k in flat)
    return "sdxl_train_network.py" if sdxl else "train_network.py"


def validate_dir(config_dir: Path, *, checkout: Path | None) -> list[str]:
    """Problems of a directory holding dataset.toml, config.toml and (optionally) sample_prompts.txt."""
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
        return problems
    config_text, arguments = loaded[ARGUMENTS_FILE]
    script = read_script(config_text, arguments)
    problems = check(script, arguments, loaded[DATASET_FILE][1], checkout=checkout, where=config_dir)
    prompts = config_dir / PROMPTS_FILE
    if prompts.is_file():
        problems += prompt_file_problems(prompts)
    return problems


def prompt_file_problems(path: Path) -> list[str]:
    """Lines of a sample-prompts file that sd-scripts would read differently from what they say."""
    problems = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):  # as readlines() splits
        if not line.strip() or line.startswith("#"):
            continue
        prompt = line.split(" --")[0]
        problems += [f"{path}:{number}: {p}" for p in prompt_text_problems(prompt.strip(), "prompt")
                     if "starts like a prompt option" in p]
    return problems
