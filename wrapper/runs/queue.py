"""Several runs one after another: a failure is recorded and the queue goes on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from wrapper.errors import GazeError
from wrapper.runs.train import Log, Outcome, failure_class_of

T = TypeVar("T")


@dataclass(frozen=True)
class QueueRow:
    spec: str
    run_dir: Path | None
    state: str
    failure_class: str | None
    final_loss: float | None
    duration_s: float
    message: str = ""


def final_loss_of(run_dir: Path) -> float | None:
    from wrapper.curves.verdicts import final_loss
    from wrapper.runs.layout import read_run_scalars

    try:
        return final_loss(read_run_scalars(run_dir))
    except (GazeError, OSError, ValueError):
        return None


def run_queue(
    items: Sequence[T], start: Callable[[T], Outcome], log: Log = print, label: Callable[[T], str] = str
) -> list[QueueRow]:
    """Start each item in turn; a run that cannot start or fails does not stop the others."""
    rows = []
    for i, item in enumerate(items, 1):
        spec = label(item)
        log(f"\n=== [{i}/{len(items)}] {spec}")
        rows.append(row_for(spec, lambda item=item: start(item), log))
        if rows[-1].state == "interrupted":
            log("queue stopped: the run was interrupted")
            break
    return rows


def row_for(spec: str, start: Callable[[], Outcome], log: Log = print, run_dir: Path | None = None) -> QueueRow:
    """Start one run and tabulate how it ended; a run refused by its checks is a "failed" row
    (in `run_dir` when the run folder was made beforehand)."""
    try:
        outcome = start()
    except GazeError as exc:
        log(f"error: {exc}")
        return QueueRow(spec, run_dir, "failed", failure_class_of(exc), None, 0.0, str(exc).splitlines()[0])
    s = outcome.status
    return QueueRow(spec, outcome.run_dir, s.state, s.failure_class, final_loss_of(outcome.run_dir),
                    outcome.duration_s, s.message or "")


def format_table(rows: list[QueueRow]) -> str:
    header = ("run", "status", "failure", "final loss", "time", "directory")
    body = [
        (
            r.spec,
            r.state,
            r.failure_class or "-",
            "-" if r.final_loss is None else f"{r.final_loss:.4f}",
            f"{r.duration_s:.0f} s",
            str(r.run_dir or "-"),
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
