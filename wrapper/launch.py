"""The only module that starts processes.

Children run in their own session (so a terminal's Ctrl-C reaches only us), their output is
teed line by line to a log file and a callback, and SIGINT/SIGTERM are forwarded to the whole
process group, escalating to SIGKILL after a grace period. Children may be run from several
threads at once (a pool of runs): Python delivers signals to the main thread only, so the main
thread holds `forwarding_signals()` and one signal stops every child group of every thread.

A long-running child never outlives us: on Linux it is started through a small guard (this module
run as `python -m wrapper.launch guard`) that asks the kernel for a signal when we die, however we
die (even SIGKILL), and then stops the child's whole process group the same way.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
OWNER_GONE = signal.SIGUSR1  # what the kernel sends the guard when its owner dies
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessResult:
    """How a child process ended."""

    returncode: int
    interrupted: bool
    duration_s: float

    @property
    def stopped_by_signal(self) -> bool:
        """Stopped by us (a forwarded Ctrl-C/SIGTERM) or by whoever sent its group SIGINT/SIGTERM."""
        return self.interrupted or self.returncode in STOP_EXIT_CODES


#: How a child stopped by SIGINT or SIGTERM exits: killed by it (the guard reports 128 + N) or as Popen says.
STOP_EXIT_CODES = frozenset(code for s in FORWARDED_SIGNALS for code in (128 + s, -s))


class _GroupStopper:
    """Forward a stop request to a process group: the same signal, then SIGTERM, then SIGKILL."""

    def __init__(self, proc: subprocess.Popen, grace_s: float) -> None:
        self.proc = proc
        self.grace_s = grace_s
        self.requested = False
        self._thread: threading.Thread | None = None

    def request(self, signum: int) -> None:
        self.requested = True
        self._signal(signum)
        if self._thread is None:
            self._thread = threading.Thread(target=self._escalate, daemon=True)
            self._thread.start()

    def _escalate(self) -> None:
        for follow_up in (signal.SIGTERM, signal.SIGKILL):
            try:
                self.proc.wait(timeout=self.grace_s)
                return
            except subprocess.TimeoutExpired:
                self._signal(follow_up)

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass


class _Children:
    """Every child group run_streaming runs, in any thread, so that one signal stops them all."""

    lock = threading.RLock()  # re-entrant: the signal handler runs in the main thread, which may hold it
    running: set[_GroupStopper] = set()
    stopped: int | None = None  # the signal that arrived inside the current forwarding_signals()
    forwarding = False


def _stop_children(signum: int) -> None:
    with _Children.lock:
        _Children.stopped = signum
        for stopper in list(_Children.running):
            stopper.request(signum)


@contextmanager
def forwarding_signals() -> Iterator[None]:
    """While inside (main thread), SIGINT/SIGTERM stop every child group run_streaming runs in any
    thread, and a child not yet started when the signal came is never started. Nests; elsewhere a no-op."""
    if _Children.forwarding or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, lambda signum, _frame: _stop_children(signum)) for s in FORWARDED_SIGNALS}
    _Children.forwarding, _Children.stopped = True, None
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _Children.forwarding, _Children.stopped = False, None


def stop_requested() -> int | None:
    """The signal that asked every child to stop (inside forwarding_signals()), else None."""
    return _Children.stopped


def _split_lines(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Split on newlines and carriage returns (progress bars redraw with \\r); keep the tail."""
    parts = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return parts[:-1], parts[-1]


def run_streaming(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    on_line: Callable[[str], None] | None = None,
    grace_s: float = 20.0,
    keep_fds: Sequence[int] = (),
    on_start: Callable[[int], None] | None = None,
) -> ProcessResult:
    """Run argv to completion, appending its combined output to log_path and feeding on_line.

    Ctrl-C or SIGTERM sent to this process is forwarded to the child's process group (from any
    thread when the main thread is inside forwarding_signals()); the result then has
    `interrupted=True`. If this process dies, the guard stops the child's group. `keep_fds` (a
    run's lock) stay open in the guard until the whole group has ended. `on_start` gets the
    child's process group id (the guard's pid) once it runs.

    Run from a thread other than the main one, that thread must stay in here while the child
    runs (it does): the kernel's parent-death signal follows the thread that started the guard.
    """
    start = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with forwarding_signals(), open(log_path, "ab") as log:
        with _Children.lock:
            if _Children.stopped is not None:  # a stop came while this run was being prepared
                return ProcessResult(128 + _Children.stopped, True, 0.0)
            proc = subprocess.Popen(
                guarded(argv, grace_s, log_path),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=tuple(keep_fds),
            )
            stopper = _GroupStopper(proc, grace_s)
            _Children.running.add(stopper)
        try:
            if on_start:
                on_start(proc.pid)
            _pump(proc, log, on_line)
            returncode = proc.wait()
        finally:
            with _Children.lock:
                _Children.running.discard(stopper)
            if proc.poll() is None:  # we are leaving because of an exception: never orphan the child
                stopper.request(signal.SIGTERM)
                proc.wait()
    return ProcessResult(returncode, stopper.requested, time.monotonic() - start)


def _pump(proc: subprocess.Popen, log, on_line: Callable[[str], None] | None) -> None:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        log.write(chunk)
        log.flush()
        lines, pending = _split_lines(pending + chunk)
        if on_line:
            for line in lines:
                on_line(line.decode("utf-8", "replace"))
    if pending and on_line:
        on_line(pending.decode("utf-8", "replace"))


def guarded(argv: Sequence[str], grace_s: float, log_path: Path) -> list[str]:
    """argv run through the guard where the kernel can tell it of our death (Linux), else as it is."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    guard = [sys.executable, "-m", "wrapper.launch", "guard", str(os.getpid()), str(grace_s), str(log_path)]
    return [*guard, "--", *argv]


def _set_death_signal(signum: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0


def _guard(owner: int, grace_s: float, log_path: Path, argv: list[str]) -> int:
    """Run argv as our child and return its exit status; if `owner` dies first, stop our whole group."""
    gone = threading.Event()
    signal.signal(OWNER_GONE, lambda *_: gone.set())
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: None)  # meant for the child; a handler (not SIG_IGN) is reset by exec
    if not _set_death_signal(OWNER_GONE) or os.getppid() != owner:
        return 1  # the owner is already gone: start nothing
    child = subprocess.Popen(argv)
    while child.poll() is None and not gone.wait(0.2):
        pass
    if gone.is_set() and child.poll() is None:
        with open(log_path, "a", encoding="utf-8") as log:  # our stdout went with the owner
            log.write(f"\n=== gaze (pid {owner}) is gone: stopping the trainer's process group\n")
        os.killpg(0, signal.SIGTERM)
        try:
            child.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        os.killpg(0, signal.SIGKILL)  # every member left, this guard included
    code = child.wait()
    return 128 - code if code < 0 else code


def run_captured(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a short helper process (a probe) and capture its output as text."""
    return subprocess.run(
        list(argv),
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


if __name__ == "__main__":  # the guard: python -m wrapper.launch guard OWNER_PID GRACE_S LOG -- ARGV...
    if len(sys.argv) < 6 or sys.argv[1] != "guard" or sys.argv[5] != "--":
        sys.exit("usage: python -m wrapper.launch guard OWNER_PID GRACE_S LOG -- ARGV...")
    sys.exit(_guard(int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]), sys.argv[6:]))
