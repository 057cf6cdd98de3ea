"""Build-once cache folders for demo assets: built in a staging folder, marked complete, reused.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wrapper.errors import GazeError

MARKER = "synth.json"


FORMAT = 1


def _marker(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_complete(folder: Path, params: dict[str, Any]) -> bool:
    return _marker(folder) == {**params, "format": FORMAT}


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True
    except (ValueError, OSError):
        return False
    return True


@contextmanager
def fresh_folder(dest: Path, params: dict[str, Any], error: type[GazeError] = GazeError) -> Iterator[Path]:
    """Yield a temporary sibling of `dest` to fill; on success write the marker and move it into place.

    Refuses a non-empty `dest` that this module did not make; replaces one it did make.
    """
    if dest.exists() and any(dest.iterdir()) and _marker(dest) is None:
        raise error(
            f"{dest} is not empty and was not made by gaze; refusing to overwrite it "
            "(choose another folder or empty it)."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.tmp*"):  # left by a killed build
        if not _alive(stale.name.rpartition(".tmp")[2]):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({**params, "format": FORMAT}, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
