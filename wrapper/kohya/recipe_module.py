"""The recipe module `gaze import` writes: which files make one import, a recipe name, and the module's
text with every key's Note as a comment block."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from wrapper.errors import ConfigError
from wrapper.kohya.importer import KOHYA_SS, SD_SCRIPTS, Imported, Note, read_sd_scripts
from wrapper.kohya.kohya_ss import read_kohya_ss
from wrapper.recipe import SamplePrompt


def read_files(files: list[Path], family: str | None = None) -> list[Imported]:
    """Each kohya_ss .json is one import; .toml files are one sd-scripts config (+ its dataset config)."""
    for path in map(Path, files):
        if not path.is_file():
            what = "is a folder; expected kohya_ss .json or sd-scripts .toml files" if path.is_dir() else (
                "does not exist")
            raise ConfigError(f"gaze import: {path} {what}")
    jsons = [Path(f) for f in files if Path(f).suffix.lower() == ".json"]
    tomls = [Path(f) for f in files if Path(f).suffix.lower() == ".toml"]
    other = [str(f) for f in files if Path(f) not in (*jsons, *tomls)]
    if other:
        raise ConfigError(f"gaze import: {', '.join(other)}: expected kohya_ss .json or sd-scripts .toml files")
    imports = [read_kohya_ss(path) for path in jsons]
    if tomls:
        imports.append(read_sd_scripts(tomls, family))
    for item in imports:
        if family and item.family != family:
            raise ConfigError(f"{item.sources[0]} is an {item.family} configuration, not {family}")
    return imports


def recipe_name(text: str) -> str:
    """A kebab-case recipe name from a file name: 'SDXL - LoRA v1.0.json' -> 'sdxl-lora-v1-0'."""
    return "-".join(filter(None, re.split(r"[^a-z0-9]+", Path(text).stem.lower()))) or "imported"


VERDICT_TITLES = {"recipe": "set in the recipe", "extra_args": "passed on as extra_args",
                  "gaze.toml": "machine paths: put them in gaze.toml", "gaze": "decided by gaze",
                  "gui": "kohya_ss GUI settings that mean nothing to training",
                  "default": "off, so sd-scripts' default applies (as with gaze)",
                  "dropped": "NOT REPRESENTABLE in a recipe (left out)"}


def note_lines(notes: list[Note]) -> list[str]:
    """Every note, grouped by verdict, one line each: `key = value: detail`."""
    lines = []
    for verdict, title in VERDICT_TITLES.items():
        chosen = [n for n in notes if n.verdict == verdict]
        if chosen:
            lines.append(f"{title} ({len(chosen)}):")
            lines += [f"  {n.key} = {_short(n.value)}: {n.detail}" for n in chosen]
    return lines


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def settings_lines(settings: dict[str, str]) -> list[str]:
    """The gaze.toml lines for an import's machine paths."""
    plain = [f"{k} = {json.dumps(v)}" for k, v in settings.items() if not k.startswith("models.")]
    models = [f"{k.removeprefix('models.')} = {json.dumps(v)}" for k, v in settings.items() if k.startswith("models.")]
    return plain + (["[models]", *models] if models else [])


def code(value: Any, indent: int = 8) -> str:
    """Python source for a recipe value (SamplePrompt objects as their constructor calls)."""
    if isinstance(value, SamplePrompt):
        fields = ", ".join(f"{k}={code(getattr(value, k))}" for k in ("prompt", "negative", "width", "height", "seed"))
        return f"SamplePrompt({fields})"
    if isinstance(value, tuple) and value and isinstance(value[0], SamplePrompt):
        pad = " " * indent
        return "(\n" + "".join(f"{pad}    {code(v)},\n" for v in value) + f"{pad})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{code(k)}: {code(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple | list):
        items = [code(v) for v in value]
        return f"({items[0]},)" if isinstance(value, tuple) and len(items) == 1 else (
            ("(" if isinstance(value, tuple) else "[") + ", ".join(items) + (")" if isinstance(value, tuple) else "]"))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a Python string literal (double quotes)
    return repr(value)


ABSENT = {KOHYA_SS: "keys the file does not have take sd-scripts' defaults (a kohya_ss preset sets only some "
                   "keys; the GUI fills the others from its own fields, which may differ)",
          SD_SCRIPTS: "keys the files do not have take sd-scripts' defaults, as in sd-scripts"}


def module_text(entries: list[tuple[Imported, str, str, str, str]]) -> str:
    """A recipe module: per entry (import, recipe name, description, baseline module, baseline variable)."""
    bases = sorted({(module, variable) for _, _, _, module, variable in entries})
    head = ['"""Recipes imported by `gaze import` from kohya_ss / sd-scripts configurations.', "",
            "Register this file in gaze.toml (recipes = \"<this file>\"), then e.g. `gaze config NAME --out DIR`.",
            '"""', "", "from __future__ import annotations", ""]
    head += [f"from {module} import {variable}" for module, variable in bases]
    head += ["from wrapper.recipe import SamplePrompt, evolve", ""]
    body, names = [], []
    for imported, name, description, _, variable in entries:
        constant = re.sub(r"\W", "_", name.upper())
        names.append(constant)
        body += ["", f"# --- {name}: {imported.kind} {', '.join(str(s) for s in imported.sources)}"]
        if imported.settings:
            body += ["# machine paths are not recipe values; put these in gaze.toml:"]
            body += [f"#   {line}" for line in settings_lines(imported.settings)]
        body += ["# every key of the source and what became of it:"]
        body += [f"#   {line}" for line in note_lines(imported.notes)]
        body += [f"#   {ABSENT[imported.kind]}"]
        body += [f"{constant} = evolve(", f"    {variable},"]
        for group, values in imported.groups.items():
            body.append(f"    {group}={{")
            body += [f"        {code(key)}: {code(value)}," for key, value in values.items()]
            body.append("    },")
        extra = tuple(imported.extra_args.items())
        body += [").replace(", f"    name={code(name)},", f"    description={code(description)},",
                 f"    extra_args={code(extra)},", ")"]
    tail = ["", "", f"RECIPES = ({', '.join(names)},)", ""]
    return "\n".join(head + body + tail)
