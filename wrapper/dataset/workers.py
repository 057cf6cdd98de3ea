"""Render images on every core: one task per image, results or per-file errors back.

Workers write straight into the staging folder, so only small dicts cross process borders.
Stop signals (Ctrl-C, SIGTERM, SIGHUP) reach the main process as `Interrupted`; it ends the
workers itself (they ignore Ctrl-C, so a terminal's Ctrl-C does not print a traceback per worker).
"""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import signal
import struct
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wrapper.dataset.images import Format, Geometry, encode, encode_jpeg, quiet_bomb_warnings, render
from wrapper.dataset.scan import cpu_count
from wrapper.errors import DatasetError

Progress = Callable[[int, int], None]
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
WORKERS_PER_CORE = 4  # more processes than this only cost memory


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; the work was stopped and its unfinished output removed.

    A KeyboardInterrupt, so `except Exception` in any library on the way cannot swallow it.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}: stopped, unfinished output removed")


class _Stop:
    """The stop signal being handled (one per process)."""

    signum: int | None = None
    raised = False
    holding = 0
    installed = False


def _on_signal(signum: int, frame: object) -> None:
    if _Stop.signum is None:
        _Stop.signum = signum
    if not _Stop.holding and not _Stop.raised:
        _Stop.raised = True
        raise Interrupted(signum)


@contextmanager
def stopping_on_signals() -> Iterator[None]:
    """Raise Interrupted in the main thread at the first SIGINT, SIGTERM or SIGHUP; later ones are
    ignored while cleaning up. Signals the caller ignores (nohup) stay ignored. Nests."""
    if _Stop.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    # Not SIG_IGN (the caller's choice) nor None (a handler set outside Python, which could not be put back).
    previous = {s: h for s in STOP_SIGNALS if (h := signal.getsignal(s)) not in (signal.SIG_IGN, None)}
    _Stop.signum, _Stop.raised, _Stop.holding, _Stop.installed = None, False, 0, True
    try:
        for s in previous:
            signal.signal(s, _on_signal)
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _Stop.installed = False


@contextmanager
def holding_signals() -> Iterator[None]:
    """Let a cleanup run to its end: a stop signal arriving meanwhile is raised when it is done."""
    _Stop.holding += 1
    try:
        yield
    finally:
        _Stop.holding -= 1
    if _Stop.installed and _Stop.signum is not None and not _Stop.raised and not _Stop.holding:
        _Stop.raised = True
        raise Interrupted(_Stop.signum)


@dataclass(frozen=True)
class RenderTask:
    source: Path
    rel: str
    out_base: str
    staging: Path
    geometry: Geometry
    format: Format
    background: tuple[int, int, int]
    jpeg_quality: int | None


def render_task(task: RenderTask) -> dict:
    """Worker: render one image into the staging folder; a dict with the result or an error."""
    from PIL import Image

    try:
        if task.source.stat().st_size == 0:
            return {"error": f"{task.rel}: empty file (0 bytes)"}
        img, oriented, upscaled = render(task.source, task.geometry, task.background)
        if task.jpeg_quality is None:
            data, ext = encode(img, task.format)
        else:
            data, ext = encode_jpeg(img, task.jpeg_quality), ".jpg"
    except Image.UnidentifiedImageError:
        return {"error": f"{task.rel}: not an image Pillow can read"}
    except Image.DecompressionBombError as exc:
        return {"error": f"{task.rel}: too large: {exc}"}
    except OSError as exc:
        return {"error": f"{task.rel}: truncated, corrupt or unreadable ({exc.strerror or exc})"}
    except (ValueError, SyntaxError, EOFError, struct.error) as exc:
        return {"error": f"{task.rel}: cannot decode ({exc})"}
    name = task.out_base + ext
    try:
        dest = task.staging / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    except OSError as exc:  # the output side: stop everything, the other images would fail too
        reason = "no space left on device" if exc.errno == errno.ENOSPC else f"cannot write ({exc.strerror or exc})"
        return {"error": f"{task.rel}: {reason}", "fatal": True}
    return {
        "file": name,
        "size": list(img.size),
        "source_size": list(oriented),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "upscaled": upscaled,
    }


def render_all(tasks: list[RenderTask], workers: int | None, progress: Progress | None) -> list[dict]:
    """Render all tasks on every core (in this process when there is one task or one worker)."""
    workers = min(workers or cpu_count(), len(tasks), WORKERS_PER_CORE * cpu_count())
    results: list[dict | None] = [None] * len(tasks)
    with quiet_bomb_warnings():
        if workers <= 1:
            for i, task in enumerate(tasks):
                results[i] = render_task(task)
                if progress:
                    progress(i + 1, len(tasks))
                if results[i].get("fatal"):
                    break
            return [r for r in results if r is not None]
        before = set(multiprocessing.active_children())
        pool = ProcessPoolExecutor(workers, initializer=_worker_setup)
        finished = False
        try:
            futures = {pool.submit(render_task, task): i for i, task in enumerate(tasks)}
            for done, future in enumerate(as_completed(futures), 1):
                try:
                    results[futures[future]] = future.result()
                except BrokenProcessPool as exc:
                    raise DatasetError(
                        "a worker process died while rendering (killed, or out of memory); nothing was written; "
                        "try fewer --workers"
                    ) from exc
                if progress:
                    progress(done, len(tasks))
                if results[futures[future]].get("fatal"):
                    break
            finished = all(r is not None for r in results)
        finally:
            with holding_signals():
                _close(pool, [p for p in multiprocessing.active_children() if p not in before], finished)
    return [r for r in results if r is not None]


def _worker_setup() -> None:
    """In each worker: the default end on SIGTERM/SIGHUP (not the parent's handler, which a fork
    copies), Ctrl-C left to the parent, Pillow's bomb warnings off (the size check reports them)."""
    from PIL import Image

    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN if s == signal.SIGINT else signal.SIG_DFL)
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def _close(pool: ProcessPoolExecutor, processes: list, finished: bool) -> None:
    """Shut the pool down: politely when every task is done, else end the workers at once (they
    may be writing into the staging folder that is about to be removed) and wait for them."""
    if finished:
        pool.shutdown(wait=True)
        return
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
    pool.shutdown(wait=True)
