"""Ask a real sd-scripts checkout about its interface. Run as a child process, never imported by gaze.

    python -m wrapper.kohya.probe interface OUT.json
        the argparse actions of train_network.py and sdxl_train_network.py, and the dataset
        config schema (what wrapper/kohya/sd_scripts_args.json is generated from)
    python -m wrapper.kohya.probe check DATASET.toml [DATASET.toml ...] OUT.json
        the same, plus sd-scripts' own ConfigSanitizer verdict on each dataset config
    python -m wrapper.kohya.probe preflight DATASET.toml OUT.json
        the same for one dataset config, plus the device the trainer will see

The checkout must be importable (PYTHONPATH); results go to OUT.json because sd-scripts logs to stdout.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any

SCRIPTS = {"train_network.py": "train_network", "sdxl_train_network.py": "sdxl_train_network"}
SCHEMA_NAMES = (
    "SUBSET_ASCENDABLE_SCHEMA",
    "DO_SUBSET_ASCENDABLE_SCHEMA",
    "DB_SUBSET_ASCENDABLE_SCHEMA",
    "DB_SUBSET_DISTINCT_SCHEMA",
    "FT_SUBSET_DISTINCT_SCHEMA",
    "CN_SUBSET_ASCENDABLE_SCHEMA",
    "CN_SUBSET_DISTINCT_SCHEMA",
    "DATASET_ASCENDABLE_SCHEMA",
    "ARGPARSE_SPECIFIC_SCHEMA",
)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def _type_name(action: argparse.Action) -> str | None:
    kind = action.type
    if kind is None:
        return None
    return getattr(kind, "__name__", type(kind).__name__)


def describe_action(action: argparse.Action) -> dict[str, Any]:
    """The facts of one argparse action that a config file can get wrong."""
    return {
        "options": list(action.option_strings),
        "kind": type(action).__name__.lstrip("_").replace("Action", "").lower() or "store",
        "type": _type_name(action),
        "default": _jsonable(action.default),
        "choices": _jsonable(list(action.choices)) if action.choices is not None else None,
        "nargs": _jsonable(action.nargs),
    }


def describe_parser(parser: argparse.ArgumentParser) -> dict[str, dict[str, Any]]:
    return {a.dest: describe_action(a) for a in parser._actions if a.dest != "help"}


def describe_validator(validator: Any) -> str:
    """Name a voluptuous validator as a short type spec: 'bool', 'float|int', 'pair:float', ..."""
    if isinstance(validator, type):
        return validator.__name__
    if isinstance(validator, functools.partial):
        klass = validator.args[0].__name__
        return f"{klass}|pair:{klass}" if "scalar_or_twodim" in validator.func.__name__ else f"pair:{klass}"
    inner = getattr(validator, "validators", None)
    if inner is not None:
        return "|".join("none" if v is None else describe_validator(v) for v in inner)
    return repr(validator)


def interface() -> dict[str, Any]:
    import importlib

    from library.config_util import ConfigSanitizer

    scripts = {name: describe_parser(importlib.import_module(mod).setup_parser()) for name, mod in SCRIPTS.items()}
    schema = {}
    for name in SCHEMA_NAMES:
        entries = getattr(ConfigSanitizer, name)
        schema[name] = {
            str(key): {"type": describe_validator(value), "required": type(key).__name__ == "Required"}
            for key, value in entries.items()
        }
    return {"scripts": scripts, "dataset_schema": schema}


def check_dataset(path: str, masked_loss: bool = False) -> list[str]:
    """Validate a dataset config exactly as train_network.py (and sdxl_train_network.py) does:
    DreamBooth, fine-tuning and dropout subsets, and conditioning subsets when masked_loss is on."""
    import voluptuous
    from library.config_util import ConfigSanitizer, load_user_config

    sanitizer = ConfigSanitizer(True, True, masked_loss, True)
    try:
        sanitizer.sanitize_user_config(load_user_config(path))
    except voluptuous.MultipleInvalid as exc:
        return [str(e) for e in exc.errors]
    except Exception as exc:  # a parse error: report it rather than crash the probe
        return [f"{type(exc).__name__}: {exc}"]
    return []


def device() -> dict[str, Any]:
    """What the trainer's torch sees: CUDA devices, bf16 support, xformers."""
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": cuda,
        "device_count": torch.cuda.device_count() if cuda else 0,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "bf16": bool(torch.cuda.is_bf16_supported()) if cuda else True,
        "memory_gib": torch.cuda.get_device_properties(0).total_memory / 1024**3 if cuda else None,
        "xformers": importlib.util.find_spec("xformers") is not None,
    }


def main(argv: list[str]) -> int:
    command, *rest = argv
    masked_loss = "--masked-loss" in rest
    rest = [r for r in rest if r != "--masked-loss"]
    if command == "interface":
        result = interface()
    elif command == "check":
        errors = {path: check_dataset(path, masked_loss) for path in rest[:-1]}
        result = {**interface(), "dataset_errors": errors}
    elif command == "preflight":
        errors = {rest[0]: check_dataset(rest[0], masked_loss)}
        result = {**interface(), "dataset_errors": errors, "device": device()}
    else:
        print(f"unknown probe command {command!r}", file=sys.stderr)
        return 2
    with open(rest[-1], "w", encoding="utf-8") as out:
        json.dump(result, out, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
