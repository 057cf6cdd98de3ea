"""The process boundary, exercised with a small stand-in script (never used outside these tests)."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from wrapper.launch import run_streaming

STAND_IN = textwrap.dedent("""
    import os, signal, sys, time, subprocess
    mode = sys.argv[1]
    if mode == "lines":
        print("first line")
        sys.stdout.write("steps:  50%|##  | 1/2 [00:01<00:01, 1.00s/it]\\r")
        sys.stdout.write("steps: 100%|####| 2/2 [00:02<00:00, 1.00s/it]\\r\\n")
        print("ünïcode ok", flush=True)
        sys.exit(int(sys.argv[2]))
    if mode == "polite":  # stops cleanly on SIGINT
        signal.signal(signal.SIGINT, lambda *a: (print("got SIGINT", flush=True), sys.exit(130)))
    if mode == "stubborn":  # ignores SIGINT and SIGTERM: only SIGKILL stops it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "family":  # a grandchild in the same process group
        code = "import time, os; open(os.environ['PIDFILE'], 'w').write(str(os.getpid())); time.sleep(60)"
        child = subprocess.Popen([sys.executable, "-c", code])
    print("ready", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    return script


def _run(stand_in: Path, *args: str, signal_on_ready: int | None = None, grace_s: float = 5.0, env=None):
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        if line == "ready" and signal_on_ready is not None:
            threading.Timer(0.2, os.kill, (os.getpid(), signal_on_ready)).start()

    log = stand_in.parent / "train.log"
    result = run_streaming([sys.executable, str(stand_in), *args], cwd=stand_in.parent,
                           env={**os.environ, **(env or {})}, log_path=log, on_line=on_line, grace_s=grace_s)
    return result, lines, log.read_text(encoding="utf-8")


def test_output_is_teed_line_by_line_including_progress_redraws(stand_in):
    result, lines, log = _run(stand_in, "lines", "3")
    assert result.returncode == 3 and not result.interrupted
    assert lines == ["first line", "steps:  50%|##  | 1/2 [00:01<00:01, 1.00s/it]",
                     "steps: 100%|####| 2/2 [00:02<00:00, 1.00s/it]", "ünïcode ok"]
    assert log.startswith("first line\nsteps:  50%") and log.endswith("ünïcode ok\n")


def test_log_is_appended_not_overwritten(stand_in):
    (stand_in.parent / "train.log").write_text("earlier launch\n")
    _, _, log = _run(stand_in, "lines", "0")
    assert log.startswith("earlier launch\nfirst line")


def test_sigint_is_forwarded_to_the_child_group(stand_in):
    start = time.monotonic()
    result, lines, _ = _run(stand_in, "polite", signal_on_ready=signal.SIGINT)
    assert result.interrupted and result.returncode == 130
    assert "got SIGINT" in lines and time.monotonic() - start < 20


def test_a_child_that_ignores_signals_is_killed_after_the_grace_period(stand_in):
    result, _, _ = _run(stand_in, "stubborn", signal_on_ready=signal.SIGTERM, grace_s=0.5)
    assert result.interrupted and result.returncode == -signal.SIGKILL


def test_the_whole_process_group_is_stopped(stand_in, tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    result, _, _ = _run(stand_in, "family", signal_on_ready=signal.SIGTERM, env={"PIDFILE": str(pidfile)})
    assert result.interrupted
    grandchild = int(pidfile.read_text())
    for _ in range(50):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the grandchild survived")


def test_handlers_are_restored(stand_in):
    before = signal.getsignal(signal.SIGINT)
    _run(stand_in, "lines", "0")
    assert signal.getsignal(signal.SIGINT) is before


OWNER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from wrapper.launch import run_streaming
    stand_in, log = Path(sys.argv[1]), Path(sys.argv[2])
    print("owner", os.getpid(), flush=True)
    run_streaming([sys.executable, str(stand_in), "stubborn"], cwd=stand_in.parent, env=os.environ,
                  log_path=log, grace_s=1.0)
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_a_child_never_outlives_its_owner_even_after_sigkill(stand_in, tmp_path):
    """SIGKILL the process that launched a child which ignores SIGINT and SIGTERM: the guard still
    stops the child's whole group (SIGTERM, then SIGKILL after the grace period)."""
    import subprocess

    owner_script = tmp_path / "owner.py"
    owner_script.write_text(OWNER)
    log = tmp_path / "train.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    owner = subprocess.Popen([sys.executable, str(owner_script), str(stand_in), str(log)], env=env,
                             stdout=subprocess.PIPE, text=True)
    assert owner.stdout.readline().startswith("owner")
    deadline = time.monotonic() + 20
    while "ready" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.1)
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and str(stand_in) in
                Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
    assert children, "the stand-in did not start"
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children)
    assert "is gone: stopping the trainer" in log.read_text()


def test_one_signal_stops_the_children_of_every_thread_and_starts_no_more(stand_in):
    """A pool's runs are started from worker threads; the main thread's forwarding_signals() stops them all."""
    from wrapper.launch import forwarding_signals, stop_requested

    results, ready = {}, threading.Barrier(3)

    def run(name: str) -> None:
        log = stand_in.parent / f"{name}.log"

        def on_line(line: str) -> None:
            if line == "ready":
                ready.wait(10)

        results[name] = run_streaming([sys.executable, str(stand_in), "polite"], cwd=stand_in.parent,
                                      env=os.environ, log_path=log, on_line=on_line, grace_s=5)

    with forwarding_signals():
        threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        ready.wait(10)
        os.kill(os.getpid(), signal.SIGINT)
        for t in threads:
            t.join(20)
        assert stop_requested() == signal.SIGINT
        late = run_streaming([sys.executable, str(stand_in), "lines", "0"], cwd=stand_in.parent, env=os.environ,
                             log_path=stand_in.parent / "late.log")
    assert all(r.interrupted and r.returncode == 130 for r in results.values())
    assert late.interrupted and late.duration_s == 0 and not (stand_in.parent / "late.log").read_text()
    assert stop_requested() is None  # a new scope starts afresh


def test_a_child_stopped_by_someone_elses_sigterm_counts_as_stopped_by_a_signal(stand_in):
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    result = run_streaming([sys.executable, "-c", code], cwd=stand_in.parent, env=os.environ,
                           log_path=stand_in.parent / "t.log")
    assert not result.interrupted and result.stopped_by_signal and result.returncode == 143
