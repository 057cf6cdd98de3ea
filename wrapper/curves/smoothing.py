"""Series out of a scalars frame, and TensorBoard's smoothing of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from wrapper.errors import GazeError
from wrapper.kohya.logs import EPOCH_TAGS, LOSS_AVERAGE, LOSS_CURRENT

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

DEFAULT_SMOOTHING = 0.6


def smooth(values: Sequence[float] | np.ndarray, weight: float = DEFAULT_SMOOTHING) -> np.ndarray:
    """TensorBoard's smoothing: a debiased exponential moving average.

    Starts at 0 and divides by 1 - weight**n, n counting finite points only; non-finite values
    pass through unchanged; a constant series is returned as is. weight 0 returns the input.
    """
    import numpy as np
    import pandas as pd

    if not 0 <= weight < 1:
        raise GazeError(f"smoothing weight {weight!r} is out of range; expected 0 <= weight < 1")
    y = np.array(values, dtype=float)
    if len(y) == 0 or (y == y[0]).all():
        return y
    finite = np.isfinite(y)
    ema = pd.Series(np.where(finite, y, np.nan)).ewm(alpha=1 - weight, adjust=True, ignore_na=True).mean()
    y[finite] = ema.to_numpy()[finite]
    return y


def series(frame: pd.DataFrame, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one tag, in step order (tblog frames are already sorted)."""
    rows = frame[frame["tag"] == tag]
    return rows["step"].to_numpy(), rows["value"].to_numpy(dtype=float)


def loss_tag(frame: pd.DataFrame) -> str | None:
    """The per-step training loss tag present: loss/current, else loss/average."""
    present = set(frame["tag"].unique()) if len(frame) else set()
    return next((t for t in (LOSS_CURRENT, LOSS_AVERAGE) if t in present), None)


def epoch_steps(frame: pd.DataFrame, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of an epoch-indexed tag, each point placed at the last step logged before it.

    sd-scripts logs epoch tags against the epoch number; their wall time says where they fall among
    the step-indexed points. A point written before any step point gets step 0.
    """
    import numpy as np

    rows = frame[frame["tag"] == tag]
    stepped = frame[~frame["tag"].isin(EPOCH_TAGS)].sort_values("wall_time", kind="stable")
    walls, steps = stepped["wall_time"].to_numpy(), stepped["step"].to_numpy()
    at = np.searchsorted(walls, rows["wall_time"].to_numpy(), side="right") - 1
    placed = np.where(at >= 0, steps[np.clip(at, 0, None)] if len(steps) else 0, 0)
    return placed.astype(np.int64), rows["value"].to_numpy(dtype=float)


def validation_pass_seconds(frame: pd.DataFrame) -> tuple[int, float | None]:
    """(step-validation passes, their median duration in seconds), from the log's timestamps: a pass at
    step s runs after the step's training scalars are written and ends when its average is."""
    import numpy as np

    from wrapper.kohya.logs import VAL_STEP

    val = frame[frame["tag"] == VAL_STEP]
    trained = frame[frame["tag"] == LOSS_CURRENT].drop_duplicates("step", keep="last").set_index("step")["wall_time"]
    durations = [wall - trained[step] for step, wall in zip(val["step"], val["wall_time"], strict=True)
                 if step in trained.index]
    return len(val), float(np.median(durations)) if durations else None
