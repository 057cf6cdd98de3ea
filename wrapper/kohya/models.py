"""Which Stable Diffusion family a base checkpoint belongs to, read cheaply from its files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wrapper.errors import RunError

#: Checkpoint families gaze can tell apart (recipes train sd15 and sdxl; an SD2.x base trains as sd15 --v2).
CHECKPOINT_FAMILIES = {"sd15": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}


def _safetensors_keys(path: Path) -> list[str]:
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        if size > 100_000_000:
            raise RunError(f"{path} is not a safetensors file (header of {size} bytes)")
        return list(json.loads(f.read(size)))


def checkpoint_family(path: Path) -> str | None:
    """'sd15', 'sd2' or 'sdxl' for a single-file checkpoint or a Diffusers folder; None if unknown."""
    if not path.exists():
        raise RunError(f"base model {path} does not exist")
    if path.is_dir():
        index = path / "model_index.json"
        if not index.is_file():
            raise RunError(f"{path} is a folder but not a Diffusers model (no model_index.json)")
        if json.loads(index.read_text()).get("_class_name", "").startswith("StableDiffusionXL"):
            return "sdxl"
        encoder = path / "text_encoder" / "config.json"
        hidden = json.loads(encoder.read_text()).get("hidden_size") if encoder.is_file() else None
        return "sd2" if hidden == 1024 else "sd15"
    if path.suffix != ".safetensors":
        return None  # a pickled .ckpt: not opened just to look
    keys = _safetensors_keys(path)
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd15"
    return None
