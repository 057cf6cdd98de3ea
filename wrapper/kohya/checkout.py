"""Find the sd-scripts checkout and build the environment its scripts run in."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

from wrapper.errors import TrainerNotFound

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PIN_FILE = PROJECT_ROOT / "vendor" / "sd-scripts.pin"
VENDORED = PROJECT_ROOT / "vendor" / "sd-scripts"
REQUIRED_FILES = ("train_network.py", "sdxl_train_network.py", "gen_img.py", "library/train_util.py")


def pinned() -> dict[str, str]:
    """The pinned repository, tag and commit from vendor/sd-scripts.pin."""
    return tomllib.loads(PIN_FILE.read_text())


def find_checkout(explicit: str | os.PathLike | None = None) -> Path:
    """Return the sd-scripts checkout: `explicit`, else $SD_SCRIPTS_DIR, else vendor/sd-scripts."""
    candidate = explicit or os.environ.get("SD_SCRIPTS_DIR") or (VENDORED if VENDORED.exists() else None)
    if candidate is None:
        pin = pinned()
        raise TrainerNotFound(
            "no sd-scripts checkout found. Either run `make vendor` (clones "
            f"{pin['repository']} at {pin['tag']} into vendor/sd-scripts; needs internet), or set "
            "SD_SCRIPTS_DIR to an existing checkout of that tag."
        )
    path = Path(candidate).expanduser().resolve()
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise TrainerNotFound(
            f"{path} is not an sd-scripts checkout (missing {', '.join(missing)}); "
            f"point SD_SCRIPTS_DIR at a checkout of tag {pinned()['tag']}."
        )
    return path


def trainer_env(checkout: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment sd-scripts runs in: its checkout importable, the hub never contacted."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), env.get("PYTHONPATH", "")]))
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    return env


def trainer_python() -> str:
    """The interpreter that runs sd-scripts: the one gaze runs in (the `train` extra installs into it)."""
    return sys.executable
