"""Hostile inputs for `gaze prep` and `gaze audit`: stop signals, pipes, odd names, long paths, files in
place of folders. Every one must end in one clear line, never a hang, a traceback or a leftover."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest_data import photo, write_image

from wrapper.cli import main
from wrapper.dataset.images import Geometry
from wrapper.dataset.prep import Plan, prepare
from wrapper.dataset.workers import Interrupted, holding_signals, stopping_on_signals
from wrapper.errors import DatasetError

GAZE = [sys.executable, "-c", "from wrapper.cli import main; main()"]
ROOT = Path(__file__).resolve().parents[1]


def gaze(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real command line in a child process: a hang fails the test instead of blocking it."""
    return subprocess.run([*GAZE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("error:", "Error:"))]


# --- stop signals -----------------------------------------------------------------------------------


def _procs() -> list[tuple[int, int, int, str]]:
    """(pid, parent pid, process group, state) of every process, from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
        out.append((int(entry.name), int(fields[1]), int(fields[2]), fields[0]))
    return out


def _default_stop_signals() -> None:
    """A test runner started under `nohup` or as a background job ignores SIGHUP or SIGINT, and gaze
    keeps a signal its caller ignores; the child under test gets the default ones."""
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)


def _living_group(pgid: int) -> list[int]:
    return [pid for pid, _, group, state in _procs() if group == pgid and state != "Z"]


@pytest.fixture(scope="module")
def busy_source(tmp_path_factory) -> Path:
    """Three dozen images that take a few seconds to stretch to 4096x4096 on two cores."""
    src = tmp_path_factory.mktemp("busy") / "src"
    first = write_image(src / "img00.png", photo((640, 480)))
    for i in range(1, 36):
        shutil.copy(first, src / f"img{i:02d}.png")
        (src / f"img{i:02d}.txt").write_text(f"photo {i}", encoding="utf-8")
    return src


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_signal_ends_every_worker_and_leaves_no_staging(busy_source, tmp_path, signum):
    cache = tmp_path / "cache"
    args = ["prep", str(busy_source), "--op", "stretch", "--size", "4096", "--format", "png", "--workers", "2"]
    proc = subprocess.Popen([*GAZE, *args, "--cache-dir", str(cache)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_stop_signals)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # working: two workers, and a first image in the staging folder
            workers = [pid for pid, parent, _, _ in _procs() if parent == proc.pid]
            staged = [p for p in cache.rglob("*.png")] if cache.exists() else []
            if len(workers) == 2 and staged:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        else:
            pytest.fail("gaze prep did not start working within a minute")
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signum
    assert err.strip().splitlines() == [err.strip()] and f"interrupted by {signum.name}" in err
    assert _living_group(proc.pid) == []
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert list(cache.iterdir()) == []  # no staging folder, no half-made dataset


def test_a_signal_during_cleanup_is_raised_once_the_cleanup_is_done():
    before = signal.getsignal(signal.SIGTERM)
    steps = []
    with pytest.raises(Interrupted) as stopped, stopping_on_signals():
        with holding_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the handler runs in here, and only notes the signal
            steps.append("cleaned up")
        steps.append("went on")
    assert steps == ["cleaned up"] and stopped.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_signal_the_caller_ignores_stays_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with stopping_on_signals():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.1)
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_audit_ends_on_a_signal_with_one_line(tmp_path, monkeypatch):
    from wrapper.dataset import audit as audit_module

    def slow_audit(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        pytest.fail("the signal did not stop the audit")

    monkeypatch.setattr(audit_module, "audit_dataset", slow_audit)
    caught = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))  # never kill pytest
    try:
        result = invoke("audit", str(tmp_path))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert caught == [] and result.exit_code == 128 + signal.SIGTERM
    assert error_lines(result.stderr) == [result.stderr.strip()] and "interrupted by SIGTERM" in result.stderr


def test_a_worker_killed_from_outside_is_one_clear_error(busy_source, tmp_path):
    workers = []

    def kill_a_worker(done: int, total: int) -> None:
        if done == 1:
            workers.extend(multiprocessing.active_children())
            os.kill(workers[0].pid, signal.SIGKILL)

    plan = Plan(Geometry("stretch", size=(2048, 2048)), format="png")
    with pytest.raises(DatasetError, match="a worker process died while rendering"):
        prepare(busy_source, plan, tmp_path / "cache", workers=2, progress=kill_a_worker)
    assert list((tmp_path / "cache").iterdir()) == [] and not any(w.is_alive() for w in workers)


# --- files that are not files ---------------------------------------------------------------------


def test_named_pipes_and_devices_are_skipped_with_a_warning(tmp_path):
    src = tmp_path / "src"
    write_image(src / "good.png", photo((64, 64)))
    write_image(tmp_path / "elsewhere" / "real.png", photo((64, 64), 1), caption=None)
    (src / "linked.png").symlink_to(tmp_path / "elsewhere" / "real.png")  # a link to a file is fine
    (src / "linked.txt").write_text("linked", encoding="utf-8")
    os.mkfifo(src / "pipe.png")
    (src / "pipe.txt").write_text("a pipe", encoding="utf-8")
    os.mkfifo(src / "pipe-caption.txt")
    write_image(src / "pipe-caption.png", photo((64, 64), 2), caption=None)
    (src / "zero.png").symlink_to("/dev/zero")
    audit = gaze("audit", str(src), "--allow-empty-captions", "--json")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    report = json.loads(audit.stdout)
    skipped = next(w for w in report["warnings"] if "not regular files" in w)
    assert "pipe.png (named pipe)" in skipped and "pipe-caption.txt (named pipe)" in skipped
    assert "zero.png (device)" in skipped and "linked.png" not in skipped
    assert sorted(i["file"] for i in report["images"]) == ["good.png", "linked.png", "pipe-caption.png"]
    prep = gaze("prep", str(src), "--op", "uncropped", "--allow-empty-captions", "--workers", "1",
                "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
    assert prep.returncode == 0, prep.stderr
    done = Path(prep.stdout.strip())
    assert sorted(p.name for p in done.glob("*.webp")) == ["good.webp", "linked.webp", "pipe-caption.webp"]
    assert "pipe.png (named pipe)" in prep.stderr and "zero.png (device)" in prep.stderr


def test_a_pipe_in_place_of_the_manifest_is_not_read(tmp_path):
    src = tmp_path / "src"
    write_image(src / "good.png", photo((64, 64)))
    os.mkfifo(src / "gaze-manifest.json")
    audit = gaze("audit", str(src))
    assert audit.returncode == 0, audit.stdout + audit.stderr
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "gaze-manifest.json")
    prep = gaze("prep", str(src), "--op", "uncropped", "--out", str(out))
    assert prep.returncode == 1 and error_lines(prep.stderr) == [prep.stderr.strip()]
    assert "exists and holds other files" in prep.stderr


# --- names and paths ------------------------------------------------------------------------------


def test_names_that_are_not_utf8_are_named_not_crashed_on(tmp_path):
    src = tmp_path / "src"
    write_image(src / "good.png", photo((64, 64)))
    raw = os.fsencode(src)
    shutil.copy(src / "good.png", raw + b"/caf\xe9.png")
    Path(os.fsdecode(raw + b"/caf\xe9.txt")).write_text("a cafe", encoding="utf-8")
    os.mkdir(raw + b"/dir\xff")
    shutil.copy(src / "good.png", raw + b"/dir\xff/inside.png")
    report = tmp_path / "report.json"
    audit = invoke("audit", str(src), "--report", str(report))
    assert audit.exit_code == 1 and "caf\\xe9.png" in audit.stdout and "dir\\xff/" in audit.stdout
    problems = "\n".join(json.loads(report.read_text(encoding="utf-8"))["problems"])
    assert "not valid UTF-8" in problems and "caf\\xe9.png" in problems
    prep = invoke("prep", str(src), "--op", "uncropped", "--cache-dir", str(tmp_path / "cache"))
    assert prep.exit_code == 1 and "caf\\xe9.png" in prep.stderr and "not valid UTF-8" in prep.stderr
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_a_dataset_folder_whose_name_is_not_utf8(tmp_path):
    src = Path(os.fsdecode(os.fsencode(tmp_path) + b"/d\xe9j\xe0"))
    write_image(src / "good.png", photo((64, 64)))
    report = tmp_path / "report.json"
    assert invoke("audit", str(src), "--report", str(report)).exit_code == 0
    assert json.loads(report.read_text(encoding="utf-8"))["path"].endswith("/d\\xe9j\\xe0")
    prep = invoke("prep", str(src), "--op", "uncropped", "--cache-dir", str(tmp_path / "cache"))
    assert prep.exit_code == 0, prep.output
    empty = Path(os.fsdecode(os.fsencode(tmp_path) + b"/vide\xe9"))
    empty.mkdir()
    assert invoke("audit", str(empty), "--report", str(report)).exit_code == 1
    assert json.loads(report.read_text(encoding="utf-8"))["problems"][0].startswith(f"{tmp_path}/vide\\xe9: no images")


def test_paths_longer_than_the_file_system_allows(tmp_path):
    src = tmp_path / "src"
    write_image(src / "good.png", photo((64, 64)))
    long = tmp_path / ("y" * 300)
    for args in (
        ["prep", str(src), "--op", "uncropped", "--out", str(long)],
        ["prep", str(src), "--op", "uncropped", "--cache-dir", str(long)],
        ["prep", str(long), "--op", "uncropped", "--cache-dir", str(tmp_path / "cache")],
        ["audit", str(long)],
        ["audit", str(src), "--report", str(long)],
    ):
        result = invoke(*args)
        assert result.exit_code != 0 and "File name too long" in result.stderr, args
        assert error_lines(result.stderr) == [result.stderr.strip()] and "y" * 300 in result.stderr
    # A source name that fits, but not with the longer extension of the prepared copy.
    write_image(src / ("x" * 251 + ".png"), photo((64, 64)))
    result = invoke("prep", str(src), "--op", "uncropped", "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 1 and "x" * 251 + ".webp" in result.stderr and "255" in result.stderr
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_folders_nested_deeper_than_the_longest_path(tmp_path):
    src = tmp_path / "src"
    write_image(src / "good.png", photo((64, 64)))
    fd = os.open(src, os.O_RDONLY)
    try:
        for _ in range(20):  # 20 x 250 bytes: past PATH_MAX (4096), made one level at a time
            os.mkdir("d" * 250, dir_fd=fd)
            inner = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)
    for args in (["audit", str(src)], ["prep", str(src), "--op", "uncropped", "--cache-dir", str(tmp_path / "c")]):
        result = invoke(*args)
        assert result.exit_code == 1 and "File name too long" in result.stderr
        assert error_lines(result.stderr) == [result.stderr.strip()]


def test_an_output_or_cache_folder_that_is_a_file(tmp_path):
    src = tmp_path / "src"
    write_image(src / "good.png", photo((64, 64)))
    afile = tmp_path / "afile"
    afile.write_text("mine", encoding="utf-8")
    plan = Plan(Geometry("uncropped"))
    with pytest.raises(DatasetError, match=f"^{afile}: is a file, not a folder"):
        prepare(src, plan, tmp_path / "cache", out=afile)
    with pytest.raises(DatasetError, match=f"^{afile}: is a file, not a folder"):
        prepare(src, plan, afile)
    with pytest.raises(DatasetError, match=f"^{afile}: is a file, not a folder"):
        prepare(src, plan, afile / "deeper")
    for option in ("--out", "--cache-dir"):
        result = invoke("prep", str(src), "--op", "uncropped", option, str(afile / "deeper"))
        assert result.exit_code == 1 and error_lines(result.stderr) == [result.stderr.strip()], option
        assert f"error: {afile}: is a file, not a folder" in result.stderr
    assert afile.read_text(encoding="utf-8") == "mine"
