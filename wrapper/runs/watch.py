"""Watching and stopping runs and sweeps, whatever executes them: `gaze status` and `gaze cancel`.

A run's state is its status.json (a queued or running run without its gaze process is "lost"),
refined for Slurm members by squeue: a member whose task is pending again after a requeue is
"queued", one whose job is gone without the run having ended is "lost".
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from wrapper.errors import GazeError, RunError
from wrapper.runs import layout as runs
from wrapper.runs import slurm, sweeps
from wrapper.runs.queue import QueueRow, final_loss_of
from wrapper.runs.train import Log

FINAL = ("succeeded", "failed", "interrupted")


@dataclass(frozen=True)
class RunView:
    """One row of `gaze status`."""

    name: str
    run_dir: Path
    state: str
    where: str
    step: int | None
    total: int | None
    loss: float | None  # smoothed (TensorBoard's 0.6), at the last step
    elapsed_s: float | None
    message: str = ""
    failure_class: str | None = None
    slurm_state: str | None = None  # its task's state while squeue still lists it

    @property
    def ended(self) -> bool:
        """Nothing more will happen to it: a final state, and no Slurm task left that could requeue it."""
        return self.state in (*FINAL, "lost") and self.slurm_state is None


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start:
        return None
    ended = datetime.fromisoformat(end) if end else datetime.now(UTC)
    return max(0.0, (ended - datetime.fromisoformat(start)).total_seconds())


def progress_of(run_dir: Path) -> tuple[int | None, float | None]:
    """(last step, smoothed loss there) from the run's TensorBoard logs, else the step from train.log."""
    from wrapper.curves.smoothing import loss_tag, series, smooth
    from wrapper.kohya.logs import parse_progress

    step = loss = None
    try:
        frame = runs.read_run_scalars(run_dir) if runs.logs_dir(run_dir).is_dir() else None
        tag = loss_tag(frame) if frame is not None and len(frame) else None
        if tag:
            steps, values = series(frame, tag)
            step, loss = int(steps[-1]), float(smooth(values)[-1])
    except (GazeError, OSError, ValueError):
        pass
    for line in reversed(runs.log_tail(run_dir, 40)):
        if (p := parse_progress(line)) is not None:
            return (max(step or 0, p.step), loss)
    return step, loss


def _where(run_dir: Path, placement: runs.Placement, slurm_job: str | None, node: str | None) -> str:
    if placement.backend == "slurm":
        host = placement.host or node
        return f"slurm {slurm_job or '?'}" + (f" on {host}" if host else "")
    host = placement.host or (runs.lock_info(run_dir) or {}).get("host")
    if not host:
        return "-"
    return f"{host} GPU {placement.gpus}" if placement.gpus else str(host)


def view_run(run_dir: Path, *, name: str | None = None, slurm_job: str | None = None,
             queue: dict[str, tuple[str, str, str]] | None = None) -> RunView:
    """A run as `gaze status` shows it; `queue` is squeue's view of the Slurm tasks (None: unknown)."""
    status = runs.read_status(run_dir)
    placement = runs.read_placement(run_dir)
    slurm_job = placement.slurm_job or slurm_job
    state, message, node, slurm_state = status.state, status.message or "", None, None
    if placement.backend == "slurm" and queue is not None and slurm_job:
        task = queue.get(slurm_job)
        if task is not None:
            node, slurm_state = task[1] or None, task[0]
            if task[0] in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED") and state != "succeeded":
                state, message = "queued", f"Slurm: {task[0].lower()} ({task[2]})"
        elif state in (*runs.ACTIVE, "lost"):
            state, message = "lost", f"its Slurm job {slurm_job} is gone; `gaze resume` continues from its newest state"
    step, loss = progress_of(run_dir) if (run_dir / runs.RUN).is_file() else (None, None)
    total = runs.read_run_info(run_dir).max_train_steps if (run_dir / runs.RUN).is_file() else None
    return RunView(name or runs.recipe_name(run_dir), run_dir, state, _where(run_dir, placement, slurm_job, node),
                   step, total, loss, _seconds(status.started_at, status.ended_at), message, status.failure_class,
                   slurm_state)


def slurm_jobs(record: sweeps.SweepRecord) -> list[str | None]:
    """Each member's Slurm array task id ("<array>_<index>"), or None (local, or not submitted)."""
    return [m.job if record.backend == "slurm" else None for m in record.members]


def view_sweep(sweep_dir: Path) -> list[RunView]:
    record = sweeps.read_sweep(sweep_dir)
    jobs = slurm_jobs(record)
    queue = slurm.task_states([j for j in jobs if j]) if any(jobs) else None
    names = [sweeps.member_label(m, record) for m in record.members]
    views = [view_run(m, name=name, slurm_job=job, queue=queue)
             for m, name, job in zip(record.member_dirs(), names, jobs, strict=True)]
    unsubmitted = record.backend == "slurm"  # a member left out of the array (its checks failed) has no job
    return [replace(v, state="lost", message="never submitted to Slurm")
            if unsubmitted and job is None and v.state == "queued" else v for v, job in zip(views, jobs, strict=True)]


def view_runs_dir(runs_dir: Path, limit: int = 20) -> list[RunView]:
    """The newest `limit` runs under a runs folder (runs/<recipe>/<stamp>), oldest first."""
    found = [p for p in Path(runs_dir).glob("*/*") if p.parent.name != sweeps.SWEEPS and runs.is_run_dir(p)]
    views = []
    for run_dir in sorted(found, key=lambda p: p.name)[-limit:]:
        try:
            views.append(view_run(run_dir))
        except RunError:  # a folder gaze did not finish making, or one made by hand
            continue
    return views


def views_for(path: Path, limit: int = 20) -> list[RunView]:
    """What `gaze status PATH` shows: a sweep's members, one run, or the newest runs of a runs folder."""
    path = Path(path)
    if sweeps.is_sweep_dir(path):
        return view_sweep(path)
    if runs.is_run_dir(path):
        sweep = sweeps.sweep_of(path)
        if sweep is not None and sweeps.is_sweep_dir(sweep):
            return [v for v in view_sweep(sweep) if v.run_dir.resolve() == path.resolve()]
        return [view_run(path)]
    if not path.is_dir():
        raise RunError(f"no folder {str(path)!r}: expected a runs folder, a sweep folder or a run folder")
    return view_runs_dir(path, limit)


def duration_text(seconds: float | None) -> str:
    """Seconds as `gaze runs` and `gaze status` show them: 4m05s, 2h17m, or - when unknown."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def format_views(views: list[RunView]) -> str:
    header = ("run", "state", "where", "step", "loss", "elapsed", "folder")
    body = [(v.name, v.state, v.where, "-" if v.step is None else f"{v.step}/{v.total or '?'}",
             "-" if v.loss is None else f"{v.loss:.4f}", duration_text(v.elapsed_s), str(v.run_dir)) for v in views]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def sweep_rows(sweep_dir: Path) -> list[QueueRow]:
    """The sweep's closing table (the same rows as a local queue's)."""
    return [QueueRow(v.name, v.run_dir, v.state, v.failure_class, final_loss_of(v.run_dir) if v.step else None,
                     v.elapsed_s or 0.0, v.message) for v in view_sweep(sweep_dir)]


def wait_for_sweep(sweep_dir: Path, *, poll_s: float = 10.0, on_change: Callable[[list[RunView]], None] | None = None,
                   timeout_s: float | None = None) -> list[RunView]:
    """Poll until every member has ended (succeeded, failed, interrupted, or lost with its job gone)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    shown: list[tuple[str, str]] = []
    while True:
        views = view_sweep(sweep_dir)
        now = [(v.name, v.state) for v in views]
        if on_change and now != shown:
            on_change(views)
        shown = now
        if all(v.ended for v in views):
            return views
        if deadline is not None and time.monotonic() > deadline:
            raise RunError(f"{sweep_dir}: still running after {timeout_s:.0f} s")
        time.sleep(poll_s)


# ---- stopping --------------------------------------------------------------------------------------------------


def cancel(path: Path, *, log: Log = print, wait_s: float = 90.0) -> list[RunView]:
    """Stop a run or a whole sweep, on either backend; every run that had not ended ends "interrupted"."""
    path = Path(path)
    if sweeps.is_sweep_dir(path):
        record = sweeps.read_sweep(path)
        targets = list(zip(record.member_dirs(), slurm_jobs(record), strict=True))
        whole = [slurm.array_of(j) for j in record.submissions] if record.backend == "slurm" else []
    elif runs.is_run_dir(path):
        sweep = sweeps.sweep_of(path)
        record = sweeps.read_sweep(sweep) if sweep is not None and sweeps.is_sweep_dir(sweep) else None
        jobs = {d.resolve(): j for d, j in zip(record.member_dirs(), slurm_jobs(record), strict=True)} if record else {}
        targets, whole = [(path, jobs.get(path.resolve()) or runs.read_placement(path).slurm_job)], []
    else:
        raise RunError(f"{path} is neither a sweep folder (sweep.json) nor a run folder")
    active = [(d, job) for d, job in targets if runs.read_status(d).state in (*runs.ACTIVE, "lost")]
    if not active:
        log("nothing to cancel: every run has ended")
        return [view_run(d, slurm_job=job) for d, job in targets]
    on_slurm = [job for d, job in active if runs.read_placement(d).backend == "slurm" and job]
    if whole or on_slurm:
        log(f"scancel {' '.join(whole or on_slurm)}")
        slurm.scancel(whole or on_slurm)
    local = [d for d, _ in active if runs.read_placement(d).backend == "local"]
    stopping = _stop_local(local, whole_sweep=sweeps.is_sweep_dir(path), log=log)
    _wait_ended([d for d, _ in active if d not in local or d in stopping], on_slurm, wait_s)
    for run_dir, _ in active:
        status = runs.read_status(run_dir)
        if status.state in (*runs.ACTIVE, "lost") and runs.holder(run_dir) is None:
            runs.write_status(run_dir, replace(status, state="interrupted", ended_at=runs.utc_now(),
                                               message="cancelled by `gaze cancel`"))
    return [view_run(d, slurm_job=job) for d, job in targets]


def _stop_local(run_dirs: list[Path], *, whole_sweep: bool, log: Log) -> list[Path]:
    """SIGTERM to whoever holds each run: its trainer's group when one member of a pool is cancelled alone,
    else the holding gaze process (which stops its trainers and marks them interrupted). A member still
    waiting in a pool is marked interrupted, and the pool skips it. Returns the runs being stopped."""
    signalled: set[int] = set()
    stopping = []
    for run_dir in run_dirs:
        info = runs.lock_info(run_dir)
        if info is None:
            continue
        if info.get("host") not in (None, socket.gethostname()):
            raise RunError(f"{run_dir} runs on {info['host']} (pid {info.get('pid')}); run `gaze cancel` there")
        if not whole_sweep and str(info.get("purpose", "")).startswith("queued") and "group" not in info:
            runs.write_status(run_dir, runs.Status("interrupted", ended_at=runs.utc_now(),
                                                   message="cancelled by `gaze cancel` before it started"))
            continue
        group = info.get("group") if not whole_sweep else None
        target = ("process group", group) if isinstance(group, int) else ("pid", info.get("pid"))
        stopping.append(run_dir)
        if not isinstance(target[1], int) or target[1] in signalled:
            continue
        signalled.add(target[1])
        log(f"SIGTERM to {target[0]} {target[1]} ({run_dir})")
        try:
            (os.killpg if target[0] == "process group" else os.kill)(target[1], signal.SIGTERM)
        except ProcessLookupError:
            pass
    return stopping


def _wait_ended(run_dirs: list[Path], slurm_jobs: list[str], wait_s: float) -> None:
    """Until no run is held by a process and no Slurm task is left, or `wait_s` passed."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        held = [d for d in run_dirs if runs.holder(d) is not None]
        queued = slurm.task_states(slurm_jobs) if slurm_jobs else {}
        left = [j for j in slurm_jobs if queued and j in queued]
        if not held and not left:
            return
        time.sleep(1.0)
