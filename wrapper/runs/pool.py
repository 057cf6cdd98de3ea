"""Several runs at once on this machine: each pinned to its own GPUs (or its share of the cores), with
its own accelerate port, the next one started as soon as one ends.

Threads drive the runs (each waits on its trainer); the main thread holds
wrapper.launch.forwarding_signals(), so Ctrl-C or SIGTERM stops every running trainer's process
group and the runs not yet started are never started: all are marked "interrupted". A run that
fails never stops the others. The pool holds every member's lock from the start, so a queued member
is owned (and shows "lost" if gaze dies); `gaze cancel RUN_DIR` stops one member alone.
"""

from __future__ import annotations

import os
import queue
import socket
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

from wrapper.errors import RunError
from wrapper.launch import forwarding_signals, stop_requested
from wrapper.recipe import Recipe
from wrapper.runs import layout as runs
from wrapper.runs.queue import QueueRow, row_for
from wrapper.runs.train import Log, Outcome, RunRequest, start_run

Starter = Callable[..., Outcome]  # start_run's signature


@dataclass(frozen=True)
class Slot:
    """One place a run can go: its GPUs (none on a CPU) and its CPU threads (None: the request's)."""

    index: int
    gpus: tuple[str, ...] = ()
    threads: int | None = None

    @property
    def pinned(self) -> bool:
        return bool(self.gpus) or self.threads is not None


@dataclass(frozen=True)
class PoolItem:
    spec: str
    recipe: Recipe
    request: RunRequest
    run_dir: Path


def visible_gpus(checkout: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs runs may be pinned to: CUDA_VISIBLE_DEVICES when set, else as many as the trainer's torch
    counts (asked in a child process, like every run's preflight; gaze never imports torch)."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        ids = [i.strip() for i in env["CUDA_VISIBLE_DEVICES"].split(",") if i.strip()]
        return ids[: ids.index("-1")] if "-1" in ids else ids  # CUDA stops at the first invalid id
    from wrapper.kohya.interface import preflight

    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "dataset.toml"
        probe.write_text("")  # only the device facts are wanted
        _, _, device = preflight(checkout, probe)
    return [str(i) for i in range(device["device_count"])]


def plan_slots(members: int, *, parallel: int | None, gpus_per_run: int | None, per_run: int, gpus: Sequence[str],
               cores: int) -> list[Slot]:
    """Where up to `parallel` runs go at once: `per_run` GPUs each from `gpus` (a pool of all of them when
    only `gpus_per_run` is given), or, on a CPU, the cores divided between them. One unpinned slot when
    neither is asked for: the runs go one after another, as a plain queue."""
    if (parallel or 1) == 1 and gpus_per_run is None:
        return [Slot(0)]
    if not gpus:
        if gpus_per_run:
            raise RunError(f"--gpus-per-run {gpus_per_run} but the trainer sees no GPU; use --parallel N on a CPU")
        count = min(parallel or 1, members)
        return [Slot(i, (), max(1, cores // count)) for i in range(count)]
    fit = len(gpus) // per_run
    if fit == 0:
        raise RunError(f"a run needs {per_run} GPU(s) but {len(gpus)} are visible ({','.join(gpus)})")
    if parallel and parallel > fit:
        raise RunError(f"--parallel {parallel} runs of {per_run} GPU(s) need {parallel * per_run} GPUs but "
                       f"{len(gpus)} are visible ({','.join(gpus)}); use --parallel {fit} or fewer GPUs per run")
    count = min(parallel or fit, members)
    threads = max(1, min(8, cores // count))
    return [Slot(i, tuple(gpus[i * per_run:(i + 1) * per_run]), threads) for i in range(count)]


def free_port() -> int:
    """A TCP port nobody listens on now (for accelerate's main process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_pool(items: Sequence[PoolItem], slots: Sequence[Slot], *, sink_for: Callable[[str], Log] = lambda _s: print,
             start: Starter = start_run, sweep: str = "") -> list[QueueRow]:
    """Run every item, at most len(slots) at once, in order; one QueueRow per item, in item order.

    `sink_for(spec)` gives the function that prints a member's lines (gaze's and its trainer's)."""
    free: queue.Queue[Slot] = queue.Queue()
    for slot in slots:
        free.put(slot)
    held: dict[int, AbstractContextManager[int]] = {}  # each member's lock, released when it ends
    with forwarding_signals():
        try:
            fds = []
            for i, item in enumerate(items):
                held[i] = runs.run_lock(item.run_dir, purpose=f"queued in sweep {sweep}".rstrip())
                fds.append(held[i].__enter__())
            with ThreadPoolExecutor(max_workers=len(slots), thread_name_prefix="gaze-run") as pool:
                futures = [pool.submit(_run_member, item, fd, free, sink_for(item.spec), start,
                                       lambda i=i: held.pop(i).__exit__(None, None, None))
                           for i, (item, fd) in enumerate(zip(items, fds, strict=True))]
                return [future.result() for future in futures]
        finally:
            for lock in list(held.values()):
                lock.__exit__(None, None, None)


def _run_member(item: PoolItem, lock_fd: int, free: queue.Queue[Slot], sink: Log, start: Starter,
                release: Callable[[], None]) -> QueueRow:
    slot = free.get()
    try:
        if stop_requested() is not None or runs.read_status(item.run_dir).state != "queued":
            return _not_started(item, sink)
        request, env = item.request, None
        if slot.pinned:
            request = replace(request, threads=request.threads or slot.threads, main_process_port=free_port())
        if slot.gpus:
            env = {"CUDA_VISIBLE_DEVICES": ",".join(slot.gpus)}
        runs.write_placement(item.run_dir, replace(runs.read_placement(item.run_dir), host=socket.gethostname(),
                                                   gpus=env["CUDA_VISIBLE_DEVICES"] if env else None))
        sink(f"starting{' on GPU ' + ','.join(slot.gpus) if slot.gpus else ''} in {item.run_dir}")
        return row_for(item.spec, lambda: start(item.recipe, request, log=sink, on_line=sink, run_dir=item.run_dir,
                                                lock_fd=lock_fd, env=env), sink, item.run_dir)
    finally:
        release()
        free.put(slot)


def _not_started(item: PoolItem, sink: Log) -> QueueRow:
    """A member that will not start: stopped with the sweep, or cancelled while it waited."""
    status = runs.read_status(item.run_dir)
    if status.state == "queued":
        status = runs.Status("interrupted", ended_at=runs.utc_now(), message="not started: the sweep was stopped")
        runs.write_status(item.run_dir, status)
    sink(f"{status.state}: {status.message or ''}".rstrip(": "))
    return QueueRow(item.spec, item.run_dir, status.state, status.failure_class, None, 0.0, status.message or "")
