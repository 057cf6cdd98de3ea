"""The LoRA files of finished runs: which checkpoints a run has and what they were trained on."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wrapper.errors import RunError, did_you_mean

FAMILIES = ("sd15", "sdxl")
LORA_SUFFIXES = (".safetensors", ".ckpt", ".pt")
FINAL = "final"


@dataclass(frozen=True)
class Source:
    """One LoRA file to generate with: a checkpoint of a run, and the base model it was trained on."""

    label: str
    run_dir: Path
    checkpoint: str
    step: int | None
    lora: Path
    model: Path
    family: str
    tokenizer_cache_dir: Path | None


def read_run(run_dir: Path) -> dict:
    """The run.json of a run directory plus `recipe_name`, checked for what generation needs."""
    run_dir = Path(run_dir)
    path = run_dir / "run.json"
    if not path.is_file():
        raise RunError(f"{run_dir}: not a run directory (no run.json); expected runs/<recipe>/<stamp>/")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    missing = [k for k in ("model", "output_name", "family") if not info.get(k)]
    if missing:
        raise RunError(f"{path}: missing key(s) {', '.join(missing)}")
    if info["family"] not in FAMILIES:
        raise RunError(f"{path}: key 'family' is {info['family']!r}; expected one of {', '.join(FAMILIES)}")
    recipe = run_dir / "recipe.json"
    name = json.loads(recipe.read_text()).get("name") if recipe.is_file() else None
    return {**info, "recipe_name": name or run_dir.parent.name}


def list_checkpoints(run_dir: Path, output_name: str) -> dict[str, tuple[int | None, Path]]:
    """LoRA files in <run>/output by name: 'step1000'... in step order, then 'final', then other stems."""
    output = Path(run_dir) / "output"
    if not output.is_dir():
        return {}
    step_re = re.compile(re.escape(output_name) + r"-step(\d+)$")
    steps, final, others = [], {}, {}
    for path in sorted(output.iterdir()):
        if path.suffix not in LORA_SUFFIXES or not path.is_file():
            continue
        if match := step_re.match(path.stem):
            steps.append((f"step{int(match[1])}", (int(match[1]), path)))
        elif path.stem == output_name:
            final[FINAL] = (None, path)
        else:
            others[path.stem] = (None, path)
    return {**dict(sorted(steps, key=lambda item: item[1][0])), **final, **others}


def _checkpoint_name(key: str, available: dict) -> str | None:
    if key in ("final", "last"):
        key = FINAL
    elif key.removeprefix("step").isdigit():
        key = f"step{int(key.removeprefix('step'))}"
    else:
        key = next((n for n in available if key in (n.lower(), available[n][1].name.lower())), key)
    return key if key in available else None


def resolve_checkpoints(run_dir: Path, specs: Sequence[str], info: dict) -> list[tuple[str, int | None, Path]]:
    """(name, step, file) per --checkpoint: 'final', a step ('1000' or 'step1000'), a file stem, or 'all'."""
    available = list_checkpoints(run_dir, info["output_name"])
    if not available:
        raise RunError(
            f"{run_dir}: the run has no LoRA file in {Path(run_dir) / 'output'}; expected "
            f"{info['output_name']}.safetensors (did the training finish? see status.json)"
        )
    chosen: list[str] = []
    for spec in specs or [FINAL]:
        key = spec.strip().lower()
        names = list(available) if key == "all" else [_checkpoint_name(key, available)]
        if names == [None]:
            raise RunError(
                f"{run_dir}: option --checkpoint: no checkpoint {spec!r}{did_you_mean(key, available)}; "
                f"expected one of {', '.join(available)} or 'all'"
            )
        chosen += [n for n in names if n not in chosen]
    return [(name, *available[name]) for name in chosen]


def find_sources(run_dirs: Sequence[Path], checkpoints: Sequence[str]) -> list[Source]:
    """Every (run, checkpoint) LoRA to generate with, labelled for sheets and folder names."""
    unique = dict.fromkeys(Path(d).resolve() for d in run_dirs)
    runs = [(run_dir, read_run(run_dir)) for run_dir in unique]
    names = [info["recipe_name"] for _, info in runs]
    sources = []
    for run_dir, info in runs:
        run_label = info["recipe_name"] if names.count(info["recipe_name"]) == 1 else run_dir.name
        model = Path(info["model"])
        if not model.exists():
            raise RunError(f"{run_dir / 'run.json'}: key 'model' is {str(model)!r}, which does not exist")
        tokenizers = Path(info["tokenizer_cache_dir"]) if info.get("tokenizer_cache_dir") else None
        for name, step, lora in resolve_checkpoints(run_dir, checkpoints, info):
            label = name if len(runs) == 1 else f"{run_label} {name}"
            sources.append(Source(label, run_dir, name, step, lora, model, info["family"], tokenizers))
    return sources
