"""Event files -> DataFrame: every scalar of a run's TensorBoard logs, with every CRC checked.

Decoding is `wrapper.tfevents`; this module knows sd-scripts' log layout and tags, joins a run's
logging folders into one series per tag and returns a DataFrame. Nothing is sampled: every point
is returned, including several points at one step (gradient accumulation).

A damaged file never raises. A record whose payload CRC fails is skipped; a bad header, an absurd
length or a truncated tail ends the file; a file that cannot be opened is skipped. Files are
memory-mapped and read in bounded memory. Each problem becomes a `LogProblem` (file, byte offset,
rows kept before it), is issued as an `EventFileWarning` and is listed in `frame.attrs["problems"]`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wrapper.curves.tfevents import decode, decode_file
from wrapper.kohya.logs import LOSS_CURRENT, LOSS_EPOCH, VAL_STEP, VAL_STEP_DIVERGENCE, find_event_files
from wrapper.kohya.validation import pass_means

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

COLUMNS = ("run", "tag", "step", "value", "wall_time")


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
    """Tag names, columns and problems of one event file (one that cannot be opened is a problem too)."""
    try:
        found = decode_file(path)
    except OSError as exc:
        problem = LogProblem(path, 0, 0, f"cannot be read ({exc.strerror or exc}); skipped")
        return [], decode(b"").columns, [problem]
    problems = [LogProblem(path, d.offset, found.rows_before(d.record), d.message) for d in found.damage]
    return found.tags, found.columns, problems


def read_event_files(files: Sequence[Path], run: str = "") -> pd.DataFrame:
    """Every scalar of `files` (oldest first) as one series per tag, sorted by step.

    A later file that starts a tag at step s replaces the earlier points of that tag at steps >= s
    (TensorBoard's rule for a restarted writer); this joins a resumed run's folders into one series.
    Problems go to `frame.attrs["problems"]`, stitching to `frame.attrs["notes"]` (lists of str).
    sd-scripts' running validation averages become each pass's own mean (`_validation_passes`).
    """
    import numpy as np

    tags: dict[str, int] = {}
    parts, problems, notes = [], [], []
    for seg, path in enumerate(files):
        names, cols, found = _read_file(Path(path))
        problems += found
        notes += _validation_passes(names, cols, str(path))
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


def _validation_passes(names: list[str], cols: dict, path: str) -> list[str]:
    """Replace the validation averages of one trainer process by each pass's own mean (in place).

    The passes of the process's first epoch are those logged before its `loss/epoch_average` at
    epoch 1; a process that logged no epoch end ran only its first epoch if it started at step 1.
    """
    import numpy as np

    if VAL_STEP not in names:
        return []
    code = {name: i for i, name in enumerate(names)}
    at = np.flatnonzero(cols["tag"] == code[VAL_STEP])
    ends = np.flatnonzero((cols["tag"] == code.get(LOSS_EPOCH, -1)) & (cols["step"] == 1))
    if len(ends):
        first_epoch = int(np.sum(cols["wall_time"][at] <= cols["wall_time"][ends[0]]))
    else:
        trained = cols["step"][cols["tag"] == code.get(LOSS_CURRENT, -1)]
        first_epoch = len(at) if len(trained) and int(trained.min()) == 1 else 0
    logged = cols["value"][at]
    means = np.asarray(pass_means(logged.tolist(), first_epoch))
    if len(at) < 2 or np.allclose(means, logged, rtol=1e-6, atol=0):
        return []
    cols["value"][at] = means
    if VAL_STEP_DIVERGENCE in code:  # logged as the average minus the training loss: shift alike
        shift = dict(zip(cols["step"][at].tolist(), (means - logged).tolist(), strict=False))
        for i in np.flatnonzero(cols["tag"] == code[VAL_STEP_DIVERGENCE]).tolist():
            cols["value"][i] += shift.get(int(cols["step"][i]), 0.0)
    return [f"{path}: {VAL_STEP} is logged as a running average over the first epoch's validation passes; "
            f"shown as each pass's own mean ({len(at)} passes, {first_epoch} in the first epoch)"]


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


def read_log_scalars(log_dir: Path | str, run: str = "") -> pd.DataFrame:
    """Every scalar of an sd-scripts logging dir (run, tag, step, value, wall_time), its folders joined."""
    return read_event_files(find_event_files(Path(log_dir)), run)
