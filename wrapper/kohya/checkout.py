"""Find the sd-scripts checkout and build the environment its scripts run in."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

from wrapper.errors import TrainerNotFound, TrainExtraMissing

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


def trainer_env(checkout: Path, base: dict[str, str] | None = None, *,
                wandb_dir: Path | None = None) -> dict[str, str]:
    """The environment sd-scripts runs in: its checkout importable, the hub never contacted; with W&B on,
    wandb's files in `wandb_dir` (sd-scripts narrows WANDB_DIR to its timestamped logging folder itself) and
    its API key left where wandb reads it, WANDB_API_KEY, never copied into a file."""
    env = dict(os.environ if base is None else base)
    if wandb_dir is not None:
        env["WANDB_DIR"] = str(wandb_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), env.get("PYTHONPATH", "")]))
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        PYTHONIOENCODING="utf-8",
        PYTHONWARNINGS="ignore::SyntaxWarning",
    )  # v0.10.1's deepspeed_utils trips one at import
    return env


#: What sd-scripts imports before it can answer anything (its requirements.txt, the `train` extra).
TRAIN_MODULES = ("torch", "accelerate", "transformers", "diffusers", "safetensors", "voluptuous", "toml", "einops")


def missing_train_extra() -> TrainExtraMissing | None:
    """The error to raise when the trainer's Python lacks the train extra, else None (nothing is imported)."""
    import importlib.util

    missing = [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return TrainExtraMissing(
        f"the packages sd-scripts needs are not installed ({', '.join(missing)} missing): install the train "
        "extra with `make setup-train` (pip install -e '.[train]')"
    )


def require_train_extra() -> None:
    if (error := missing_train_extra()) is not None:
        raise error


#: The extra each tracker needs, beyond the train extra.
TRACKER_EXTRAS = {"wandb": ("wandb", "wandb")}  # tracker: (module, extra)


def require_trackers(trackers: tuple[str, ...] | list[str]) -> None:
    """Refuse, before anything starts, a tracker whose package the trainer's Python lacks."""
    import importlib.util

    for tracker in trackers:
        module, extra = TRACKER_EXTRAS.get(tracker, (None, None))
        if module and importlib.util.find_spec(module) is None:
            raise TrainExtraMissing(f"--log-with {tracker}: {module} is not installed; install the {extra} extra "
                                    f"with `make setup-trackers` (pip install -e '.[{extra}]')")


def trainer_python() -> str:
    """The interpreter that runs sd-scripts: the one gaze runs in (the `train` extra installs into it)."""
    return sys.executable


def clone_pinned(dest: Path = VENDORED) -> Path:
    """Clone the pinned tag into `dest` (needs internet); explain exactly what to do when that fails."""
    from wrapper.launch import run_captured

    pin = pinned()
    done = run_captured(
        ["git", "clone", "--quiet", "--branch", pin["tag"], "--depth", "1", pin["repository"], str(dest)], timeout=600
    )
    if done.returncode != 0:
        raise TrainerNotFound(
            f"no sd-scripts checkout, and cloning {pin['repository']} failed ({done.stderr.strip()[-200:]}). "
            f"On a machine with internet run `git clone --branch {pin['tag']} {pin['repository']} "
            f"vendor/sd-scripts` (commit {pin['commit']}) and copy it here, or set SD_SCRIPTS_DIR to a checkout."
        )
    return find_checkout(dest)


def ensure_checkout(explicit: str | os.PathLike | None = None) -> Path:
    """find_checkout, falling back to cloning the pin into vendor/sd-scripts when nothing is configured."""
    try:
        return find_checkout(explicit)
    except TrainerNotFound:
        if explicit or os.environ.get("SD_SCRIPTS_DIR") or VENDORED.exists():
            raise
        return clone_pinned()
