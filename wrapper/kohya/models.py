"""Which Stable Diffusion family a base checkpoint belongs to, read cheaply from its files.

Nothing is loaded or unpickled: a safetensors file's JSON header, or the strings of a pickled .ckpt
(read as opcodes, never executed), or a Diffusers folder's configs say which text encoders it holds.
A checkpoint gaze cannot identify is refused before anything starts, saying what was found.
"""

from __future__ import annotations

import json
import pickletools
import struct
import zipfile
from pathlib import Path

from wrapper.errors import RunError

#: Checkpoint families gaze can tell apart (recipes train sd15 and sdxl; an SD2.x base trains as sd15 --v2).
CHECKPOINT_FAMILIES = {"sd15": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}
#: The text-encoder keys of each family's single-file layout (what sd-scripts' model_util reads).
FAMILY_PREFIXES = (
    ("sdxl", "conditioner.embedders.1."),
    ("sd2", "cond_stage_model.model."),
    ("sd15", "cond_stage_model.transformer."),
)
MAX_HEADER = 100_000_000


def safetensors_keys(path: Path) -> list[str]:
    """The tensor names in a safetensors file's header; a RunError for anything else."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise RunError(f"{path} is not a safetensors file: it is {'empty' if not head else 'too short'}")
        size = struct.unpack("<Q", head)[0]
        if size > min(MAX_HEADER, path.stat().st_size - 8):
            raise RunError(f"{path} is not a safetensors file (its header claims {size} bytes)")
        try:
            header = json.loads(f.read(size))
        except (UnicodeDecodeError, ValueError) as exc:
            raise RunError(f"{path} is not a safetensors file: its header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise RunError(f"{path} is not a safetensors file: its header is not a JSON object")
    return [k for k in header if k != "__metadata__"]


def pickle_strings(path: Path) -> list[str]:
    """The strings in a pickled checkpoint (torch's zip format or the legacy stream), read as opcodes."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("data.pkl")]
            data = archive.read(names[0]) if names else b""
    else:
        data = path.read_bytes()
    strings, pos = [], 0
    while pos < len(data):  # the legacy format is several pickles one after another, then raw storage
        try:
            for opcode, arg, end in pickletools.genops(data[pos:]):
                if isinstance(arg, str):
                    strings.append(arg)
                if opcode.name == "STOP":
                    pos += end + 1
                    break
            else:
                break
        except (ValueError, EOFError, IndexError, UnicodeDecodeError):
            break
    return strings


def _family_of(keys: list[str]) -> str | None:
    return next((family for family, prefix in FAMILY_PREFIXES if any(k.startswith(prefix) for k in keys)), None)


def _diffusers_family(path: Path) -> str:
    index = path / "model_index.json"
    if not index.is_file():
        raise RunError(f"{path} is a folder but not a Diffusers model (no model_index.json)")
    try:
        info = json.loads(index.read_text(encoding="utf-8"))
        encoder = path / "text_encoder" / "config.json"
        hidden = json.loads(encoder.read_text(encoding="utf-8")).get("hidden_size") if encoder.is_file() else None
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        raise RunError(f"{path}: cannot read the Diffusers model's configs ({exc})") from None
    if str(info.get("_class_name", "")).startswith("StableDiffusionXL"):
        return "sdxl"
    return "sd2" if hidden == 1024 else "sd15"


def checkpoint_family(path: Path) -> str:
    """'sd15', 'sd2' or 'sdxl' for a single-file checkpoint or a Diffusers folder; a RunError otherwise."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"base model {path} does not exist")
    if path.is_dir():
        return _diffusers_family(path)
    if path.stat().st_size == 0:
        raise RunError(f"base model {path} is empty")
    if path.suffix.lower() == ".safetensors":
        keys = safetensors_keys(path)
    elif path.suffix.lower() in (".ckpt", ".pt", ".pth", ".bin"):
        keys = pickle_strings(path)
    else:
        raise RunError(f"base model {path}: expected a .safetensors or .ckpt file, or a Diffusers folder")
    family = _family_of(keys)
    if family is None:
        shown = ", ".join(keys[:4]) + (f", ... ({len(keys)} in all)" if len(keys) > 4 else "") if keys else "none"
        expected = " or ".join(f"{p}* ({CHECKPOINT_FAMILIES[f]})" for f, p in FAMILY_PREFIXES)
        raise RunError(f"base model {path}: not a Stable Diffusion checkpoint gaze can identify; expected keys "
                       f"{expected}, found {shown}")
    return family
