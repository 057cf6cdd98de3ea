"""Event files -> DataFrame: every scalar of a run's TensorBoard logs, with every CRC checked.

Decoding is `wrapper.tfevents`; this module knows sd-scripts' log layout and tags, joins a run's
logging folders into one series per tag and returns a DataFrame. Nothing is sampled: every point
is returned, including several points at one step (gradient accumulation).

A damaged file never raises. A record whose payload CRC fails is skipped; a bad header or a
truncated tail ends the file. Each problem becomes a `LogProblem` (file, byte offset, rows kept
before it), is issued as an `EventFileWarning` and is listed in `frame.attrs["problems"]`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wrapper.tfevents import decode

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# sd-scripts' scalar tags (train_network.py, v0.10.1).
LOSS_CURRENT = "loss/current"
LOSS_AVERAGE = "loss/average"
LOSS_EPOCH = "loss/epoch_average"
VAL_STEP = "loss/validation/step_average"
VAL_STEP_DIVERGENCE = "loss/validation/step_divergence"
VAL_EPOCH = "loss/validation/epoch_average"
VAL_EPOCH_DIVERGENCE = "loss/validation/epoch_divergence"
LR_PREFIX = "lr/"
#: Tags logged against the epoch number instead of the global step.
EPOCH_TAGS = frozenset({LOSS_EPOCH, VAL_EPOCH, VAL_EPOCH_DIVERGENCE})
COLUMNS = ("run", "tag", "step", "value", "wall_time")

_EVENTS_GLOB = "events.out.tfevents.*"
_STAMP = re.compile(r"(\d{14})$")


class EventFileWarning(UserWarning):
    """An event file is truncated or corrupt; the rows before the damage were kept."""


@dataclass(frozen=True)
class LogProblem:
    """Damage found in one event file."""

    path: Path
    offset: int
    rows_before: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} at byte {self.offset} ({self.rows_before} rows read before it)"


def _read_file(path: Path) -> tuple[list[str], dict[str, np.ndarray], list[LogProblem]]:
    """Tag names, columns and problems of one event file."""
    found = decode(path.read_bytes())
    problems = [LogProblem(path, d.offset, found.rows_before(d.record), d.message) for d in found.damage]
    return found.tags, found.columns, problems


def find_event_files(log_dir: Path) -> list[Path]:
    """The scalar event files of a logging dir, oldest logging folder first.

    sd-scripts writes `<log_dir>/<prefix><YYYYmmddHHMMSS>/<tracker>/events.out.tfevents.*`, one
    folder per start (a resumed run adds one). Deeper folders hold `--log_config` hparams: skipped.
    """
    log_dir = Path(log_dir)
    files = sorted(log_dir.glob(_EVENTS_GLOB))
    folders = [d for d in log_dir.iterdir() if d.is_dir()] if log_dir.is_dir() else []
    folders.sort(key=_folder_key)
    for folder in folders:
        files += sorted(folder.glob(_EVENTS_GLOB))
        for tracker in sorted(d for d in folder.iterdir() if d.is_dir()):
            files += sorted(tracker.glob(_EVENTS_GLOB))
    return [f for f in files if f.is_file()]


def _folder_key(folder: Path) -> tuple[str, str]:
    stamp = _STAMP.search(folder.name)
    return (stamp.group(1) if stamp else "", folder.name)


def read_event_files(files: Sequence[Path], run: str = "") -> pd.DataFrame:
    """Every scalar of `files` (oldest first) as one series per tag, sorted by step.

    A later file that starts a tag at step s replaces the earlier points of that tag at steps >= s
    (TensorBoard's rule for a restarted writer); this joins a resumed run's folders into one series.
    Problems go to `frame.attrs["problems"]`, stitching to `frame.attrs["notes"]` (lists of str).
    """
    import numpy as np

    tags: dict[str, int] = {}
    parts, problems, notes = [], [], []
    for seg, path in enumerate(files):
        names, cols, found = _read_file(Path(path))
        problems += found
        remap = np.array([tags.setdefault(n, len(tags)) for n in names] or [0], np.int32)
        cols["tag"] = remap[cols["tag"]] if len(cols["tag"]) else cols["tag"]
        cols["segment"] = np.full(len(cols["step"]), seg, np.int32)
        parts.append(cols)
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else None
    if merged is not None and len(files) > 1:
        merged, notes = _stitch(merged, list(tags), [str(f) for f in files])
    for problem in problems:
        warnings.warn(str(problem), EventFileWarning, stacklevel=2)
    frame = _frame_of(merged, list(tags), run)
    frame.attrs["problems"] = [str(p) for p in problems]
    frame.attrs["notes"] = notes
    return frame


def _stitch(cols: dict, names: list[str], files: list[str]) -> tuple[dict, list[str]]:
    import numpy as np

    keep = np.ones(len(cols["step"]), bool)
    notes = []
    for seg in range(1, int(cols["segment"].max(initial=0)) + 1):
        here = cols["segment"] == seg
        for code in np.unique(cols["tag"][here]).tolist():
            first = int(cols["step"][here & (cols["tag"] == code)][0])
            drop = keep & (cols["segment"] < seg) & (cols["tag"] == code) & (cols["step"] >= first)
            if drop.any():
                notes.append(
                    f"{files[seg]}: {names[code]} restarts at step {first}; "
                    f"{int(drop.sum())} earlier points at steps >= {first} replaced"
                )
            keep &= ~drop
    return {k: v[keep] for k, v in cols.items()}, notes


def _frame_of(cols: dict | None, names: list[str], run: str) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    if cols is None:
        cols = {
            "tag": np.empty(0, np.int32),
            "step": np.empty(0, np.int64),
            "value": np.empty(0),
            "wall_time": np.empty(0),
        }
    rank = np.argsort(np.argsort(np.array(names, dtype=object))).astype(np.int32)  # alphabetical tags
    tags = rank[cols["tag"]] if len(names) else cols["tag"]
    order = np.lexsort((cols["step"], tags))
    n = len(order)
    return pd.DataFrame(
        {
            "run": pd.Categorical.from_codes(np.zeros(n, np.int8), categories=[run]),
            "tag": pd.Categorical.from_codes(tags[order], categories=sorted(names)),
            "step": cols["step"][order],
            "value": cols["value"][order],
            "wall_time": cols["wall_time"][order],
        }
    )


def read_run_scalars(run_dir: Path | str, run: str | None = None) -> pd.DataFrame:
    """Every scalar of a run (run, tag, step, value, wall_time), its logging folders joined.

    Reads `<run_dir>/logs` (or `run_dir` itself when it has no `logs/`); a run without logs gives
    an empty frame. `run` names the run in the `run` column (default: the folder name).
    """
    run_dir = Path(run_dir)
    log_dir = run_dir / "logs" if (run_dir / "logs").is_dir() else run_dir
    return read_event_files(find_event_files(log_dir), run if run is not None else run_dir.name)
