"""Run directories: their layout, their status file, and the states saved in them.

runs/<recipe>/<UTC YYYYmmddTHHMMSSZ>-<6 hex>/
  recipe.json  run.json  command.json  environment.json  manifest.json  status.json
  dataset.toml  config.toml  sample_prompts.txt  train.log
  logs/        sd-scripts' TensorBoard folder (one timestamped sub-folder per launch)
  output/      LoRA files, -state folders, sample/
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from wrapper.errors import RunError

State = Literal["queued", "running", "succeeded", "failed", "interrupted"]
STATUS, RECIPE, RUN, COMMAND, ENVIRONMENT, MANIFEST, LOG = (
    "status.json",
    "recipe.json",
    "run.json",
    "command.json",
    "environment.json",
    "manifest.json",
    "train.log",
)


@dataclass(frozen=True)
class Status:
    state: State
    started_at: str | None = None
    ended_at: str | None = None
    exit_code: int | None = None
    failure_class: str | None = None
    message: str | None = None
    launches: int = 0


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} is missing: is {path.parent} a gaze run directory?") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON ({exc})") from None


def new_run_dir(runs_dir: Path, name: str, *, now: datetime | None = None) -> Path:
    """Create and return a fresh run directory; an existing one is never reused."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    parent = runs_dir / name
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        path = parent / f"{stamp}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RunError(f"could not create a new run directory under {parent}")


def write_status(run_dir: Path, status: Status) -> None:
    write_json(run_dir / STATUS, asdict(status))


def read_status(run_dir: Path) -> Status:
    return Status(**read_json(run_dir / STATUS))


def output_dir(run_dir: Path) -> Path:
    return run_dir / "output"


def final_lora(run_dir: Path, output_name: str) -> Path:
    return output_dir(run_dir) / f"{output_name}.safetensors"


def saved_states(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete saved state, oldest first."""
    states = []
    for folder in output_dir(run_dir).glob("*-state"):
        info = folder / "train_state.json"
        if info.is_file():
            try:
                step = int(json.loads(info.read_text())["current_step"])
            except (ValueError, KeyError, json.JSONDecodeError):
                continue
            states.append((step, folder))
    return sorted(states)


def saved_loras(run_dir: Path) -> list[Path]:
    return sorted(output_dir(run_dir).glob("*.safetensors"))


def is_run_dir(path: Path) -> bool:
    return (path / RECIPE).is_file() and (path / RUN).is_file()
