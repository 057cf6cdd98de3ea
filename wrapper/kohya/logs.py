"""sd-scripts' logging (train_network.py, v0.10.1): TensorBoard tags, the log-folder layout, progress lines."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

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
KNOWN_TAGS = (LOSS_CURRENT, LOSS_AVERAGE, LOSS_EPOCH, VAL_STEP, VAL_STEP_DIVERGENCE, VAL_EPOCH, VAL_EPOCH_DIVERGENCE)

EVENTS_GLOB = "events.out.tfevents.*"
_STAMP = re.compile(r"(\d{14})$")

#: tqdm's bar as sd-scripts prints it: "steps:  40%|████      | 2/5 [00:05<00:07,  2.51s/it, avr_loss=0.123]"
_PROGRESS = re.compile(
    r"steps:\s+(\d+)%\|.*?\|\s*(\d+)/(\d+)\s*\[([^\]<]*)<?([^\],]*),?\s*([^\],]*)"
    r"(?:,\s*avr_loss=([\d.eE+-]+|nan))?"
)


@dataclass(frozen=True)
class Progress:
    """One progress-bar update of the trainer."""

    step: int
    total: int
    elapsed: str
    speed: str
    loss: str | None


def parse_progress(line: str) -> Progress | None:
    """The progress update in a line of the trainer's output, or None."""
    match = _PROGRESS.search(line)
    if not match:
        return None
    _, step, total, elapsed, _, speed, loss = match.groups()
    return Progress(int(step), int(total), elapsed.strip(), speed.strip(), loss)


def find_event_files(log_dir: Path) -> list[Path]:
    """The scalar event files of a logging dir, oldest logging folder first.

    sd-scripts writes `<log_dir>/<prefix><YYYYmmddHHMMSS>/<tracker>/events.out.tfevents.*`, one
    folder per start (a resumed run adds one). Deeper folders hold `--log_config` hparams: skipped.
    """
    log_dir = Path(log_dir)
    files = sorted(log_dir.glob(EVENTS_GLOB))
    folders = [d for d in log_dir.iterdir() if d.is_dir()] if log_dir.is_dir() else []
    folders.sort(key=_folder_key)
    for folder in folders:
        files += sorted(folder.glob(EVENTS_GLOB))
        for tracker in sorted(d for d in folder.iterdir() if d.is_dir()):
            files += sorted(tracker.glob(EVENTS_GLOB))
    return [f for f in files if f.is_file()]


def _folder_key(folder: Path) -> tuple[str, str]:
    stamp = _STAMP.search(folder.name)
    return (stamp.group(1) if stamp else "", folder.name)
