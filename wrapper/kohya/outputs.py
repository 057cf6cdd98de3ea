"""sd-scripts' output names (library/train_util.py, v0.10.1): LoRA files, saved states, train_state.json.

    <output_name>.safetensors                   the final LoRA
    <output_name>-step<step:08d>.safetensors    every N steps
    <output_name>-<epoch:06d>.safetensors       every N epochs
    <output_name>[-step<step:08d>|-<epoch:06d>]-state/   accelerate state + train_state.json
"""

from __future__ import annotations

import json
import re
from pathlib import Path

LORA_SUFFIXES = (".safetensors", ".ckpt", ".pt")
STATE_SUFFIX = "-state"
TRAIN_STATE = "train_state.json"
SAMPLE_DIR = "sample"
#: What accelerate's save_state writes for a LoRA run; a state folder without them cannot be resumed.
STATE_FILES = ("model.safetensors", "optimizer.bin", "scheduler.bin", TRAIN_STATE)
#: The step of a step-numbered LoRA file or state folder, whatever the output name.
STEP_NAME = re.compile(r"-step(?P<step>\d+)(?P<state>-state)?(?:\.safetensors|\.ckpt|\.pt)?$")


def step_of(name: str) -> int | None:
    """The step a step-numbered LoRA file or state folder name carries, or None."""
    match = STEP_NAME.search(name)
    return int(match["step"]) if match else None


def step_lora_stem(output_name: str) -> re.Pattern[str]:
    """The stem of `output_name`'s step-numbered LoRA files, with the step as group 1."""
    return re.compile(re.escape(output_name) + r"-step(\d+)$")


def final_lora_name(output_name: str) -> str:
    return f"{output_name}.safetensors"


def state_step(folder: Path) -> int | None:
    """`current_step` of a saved state, or None when the folder is not a complete, readable state."""
    if not folder.is_dir() or not all((folder / name).is_file() for name in STATE_FILES):
        return None
    try:
        info = json.loads((folder / TRAIN_STATE).read_text(encoding="utf-8"))
        step = info["current_step"] if isinstance(info, dict) else None
    except (OSError, ValueError, KeyError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None


def saved_states(output_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete saved state in an output folder, oldest first."""
    found = ((state_step(folder), folder) for folder in Path(output_dir).glob(f"*{STATE_SUFFIX}"))
    return sorted((step, folder) for step, folder in found if step is not None)


def output_name_for(recipe_name: str) -> str:
    """A recipe spec as an sd-scripts output name (file-name safe: no +, = or :)."""
    return recipe_name.replace("+", "_").replace("=", "-").replace(":", "-")
