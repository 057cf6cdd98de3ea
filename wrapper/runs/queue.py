"""Several runs one after another: a failure is recorded and the queue goes on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from wrapper.errors import DatasetError, GazeError
from wrapper.runs.train import Log, Outcome

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
        try:
            outcome = start(item)
        except GazeError as exc:
            kind = "data" if isinstance(exc, DatasetError) else "configuration"
            log(f"error: {exc}")
            rows.append(QueueRow(spec, None, "failed", kind, None, 0.0, str(exc).splitlines()[0]))
            continue
        s = outcome.status
        rows.append(
            QueueRow(
                spec,
                outcome.run_dir,
                s.state,
                s.failure_class,
                final_loss_of(outcome.run_dir),
                outcome.duration_s,
                s.message or "",
            )
        )
        if s.state == "interrupted":
            log("queue stopped: the run was interrupted")
            break
    return rows


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
