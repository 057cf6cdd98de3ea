"""Hostile run folders and logs through `gaze report` and `gaze compare`: each ends in one clear error
line or in a report with a warning naming the file, never a traceback, a hang or a memory blow-up;
and a comparison never writes over a run or an earlier comparison it was not asked to replace."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import runfactory as rf
from cli_checks import gaze_runner, one_error_line

from wrapper.curves.tfevents import masked_crc
from wrapper.reports import compare

N = 60


@pytest.fixture
def gaze(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return gaze_runner()


def warnings_of(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [line for line in result.output.splitlines() if line.startswith("warning: ")]


@pytest.fixture
def run(tmp_path) -> Path:
    return rf.make_run(tmp_path / "runs", loss=rf.converging(N), sample_steps=[20, 40])


@pytest.fixture
def other(tmp_path) -> Path:
    return rf.make_run(tmp_path / "runs", "sd15-uncropped", loss=rf.converging(N, seed=1), sample_steps=[20])


def _png(path: Path, width: int, height: int, data: bytes) -> Path:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width x height pixels, with hardly any pixel data."""
    return _png(path, width, height, zlib.compress(b"\0" * 4096))


def png_bomb(path: Path, side: int) -> Path:
    """A real decompression bomb: side x side black RGB pixels, every row there, in a few hundred KB."""
    packer, row = zlib.compressobj(9), b"\0" * (1 + 3 * side) * 100
    data = b"".join(packer.compress(row) for _ in range(side // 100)) + packer.flush()
    return _png(path, side, side, data)


# ---- 1. run folders with files of the wrong shape ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "named"),
    [
        ("recipe.json", [], "expected a JSON object, found list"),
        ("recipe.json", {"name": "x", "glitches": 3}, "key 'glitches' is 3; expected a list of strings"),
        ("recipe.json", {"name": "x", "modifiers": "x"}, "key 'modifiers' is \"x\"; expected a list of strings"),
        ("recipe.json", {"name": "x", "recipe": []}, "key 'recipe' is []; expected an object"),
        ("recipe.json", {"name": 5, "glitches": ["a", 1]}, "key 'name' is 5; expected a string"),
        ("recipe.json", {"name": "x", "colour": "red"}, "unknown key 'colour'"),
        ("status.json", "failed", "expected a JSON object, found str"),
        ("status.json", {"state": 5, "exit_code": "one"}, "key 'state' is 5; expected one of 'queued', 'running'"),
        ("status.json", {"state": "failed", "exit_code": [1]}, "key 'exit_code' is [1]; expected an integer"),
    ],
)
def test_json_of_the_wrong_shape_is_a_warning_naming_the_file(gaze, run, other, name, content, named):
    (run / name).write_text(json.dumps(content))
    result = gaze("report", str(run))
    assert any(f"{run / name}" in w and named in w for w in warnings_of(result)), result.output
    page = (run / "report.html").read_text()
    assert named.replace('"', "&quot;").replace("'", "&#x27;") in page
    result = gaze("compare", str(run), str(other), "--out", "cmp")
    assert any(f"{run / name}" in w and named in w for w in warnings_of(result)), result.output
    assert (Path("cmp") / "comparison.html").is_file()


def test_json_that_is_not_json_or_not_a_file(gaze, run, other):
    (run / "recipe.json").write_bytes(b"\xff\xfe{not json")
    (run / "status.json").unlink()
    (run / "status.json").mkdir()
    warnings = warnings_of(gaze("report", str(run)))
    assert any("recipe.json is not valid JSON" in w for w in warnings)
    assert any("status.json is not a file" in w for w in warnings)
    assert "recipe.json could not be used" in (run / "report.html").read_text()
    warnings_of(gaze("compare", str(run), str(other), "--out", "cmp"))


def test_plots_that_is_a_file(gaze, run):
    (run / "plots").write_text("mine")
    line = one_error_line(gaze("report", str(run)))
    assert f"{run / 'plots'} is a file, not a folder" in line and "nothing was written" in line
    assert (run / "plots").read_text() == "mine" and not (run / "report.html").exists()


def test_report_files_that_are_links_or_folders_are_refused(gaze, run, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (run / "report.html").symlink_to(victim)
    line = one_error_line(gaze("report", str(run)))
    assert "report.html is a symbolic link" in line and victim.read_text() == "keep"
    (run / "report.html").unlink()
    (run / "report.md").mkdir()
    assert "report.md is a folder, not a file" in one_error_line(gaze("report", str(run)))


@pytest.mark.parametrize("size", [(100_000, 100_000), (12_000, 12_000)], ids=["bomb", "over-the-cap"])
def test_a_decompression_bomb_sample_is_an_unreadable_cell(gaze, run, other, size):
    (bad,) = [p for p in (run / "output" / "sample").glob("*.png") if "_000040_00_" in p.name]
    png_declaring(bad, *size)
    warnings = warnings_of(gaze("report", str(run)))
    why = f"declares {size[0]}x{size[1]} pixels" if size[0] < 50_000 else "could be decompression bomb"
    assert any(str(bad) in w and why in w and "'unreadable'" in w for w in warnings), warnings
    assert str(bad) in (run / "report.html").read_text()
    warnings = warnings_of(gaze("compare", str(run), str(other), "--out", "cmp"))
    assert any(str(bad) in w for w in warnings)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc")
def test_a_bomb_is_never_decoded(tmp_path):
    """In a child process, whose peak memory (VmHWM: reset by exec, unlike ru_maxrss) is its own: these 64
    megapixels decoded take over 400 MB."""
    bomb = png_bomb(tmp_path / "bomb.png", 8_000)  # under Pillow's own limit (89 megapixels), over gaze's
    code = (
        "import re, sys; from pathlib import Path; from wrapper.reports.plots import thumbnail_grid\n"
        "seen = []\n"
        "thumbnail_grid(['p'], ['s'], {(0, 0): Path(sys.argv[1])}, on_unreadable=lambda p, why: seen.append(why))\n"
        "peak = int(re.search(r'VmHWM:\\s*(\\d+)', Path('/proc/self/status').read_text())[1])\n"
        "print(len(seen), peak // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=60,
                         check=True, cwd=Path(__file__).parents[1]).stdout.split()
    assert out[0] == "1" and int(out[1]) < 150, out  # MB


def test_train_state_and_generation_index_of_the_wrong_shape(gaze, run, other):
    state = run / "output" / "lora-step00000040-state"
    state.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.bin", "scheduler.bin"):
        (state / name).write_bytes(b"")
    (state / "train_state.json").write_text("[1, 2]")
    generation = run / "generations" / "20260101T000000Z-abcdef"
    generation.mkdir(parents=True)
    png_declaring(generation / "sheets" / "bomb.png", 100_000, 100_000)
    index = {"images": 3, "sheets": [5, {"file": "../../../../etc/passwd"}, {"file": "sheets/bomb.png"}]}
    (generation / "index.json").write_text(json.dumps(index))
    (run / "generations" / "20260102T000000Z-abcdef").mkdir()
    (run / "generations" / "20260102T000000Z-abcdef" / "index.json").write_text('"no"')
    warnings = warnings_of(gaze("report", str(run)))
    assert any("sheet 5 is not a file in" in w for w in warnings)
    assert any("etc/passwd" in w and "is not a file in" in w for w in warnings)
    assert any("bomb.png: unreadable contact sheet" in w for w in warnings)
    assert any("expected a JSON object, found str" in w for w in warnings)
    warnings_of(gaze("compare", str(run), str(other), "--out", "cmp"))


def test_the_same_run_twice(gaze, run):
    line = one_error_line(gaze("compare", str(run), str(run / ".." / run.name), "--out", "cmp"))
    assert "are the same run" in line and not Path("cmp").exists()


def test_runs_whose_labels_would_collide_keep_their_own_columns(tmp_path):
    a = rf.make_run(tmp_path / "a", loss=rf.converging(N))
    b = rf.make_run(tmp_path / "b", loss=rf.converging(N, seed=2))
    labels = [v.label for v in compare.load_runs([a, b])]
    assert len(set(labels)) == 2, labels


# ---- 2. logs with other tags than sd-scripts' ---------------------------------------------------------------------


def test_logs_with_other_tags_say_which_tags_they_hold(gaze, tmp_path, other):
    run = rf.make_run(tmp_path / "runs", "foreign", loss=None)
    rf.write_events(run / "logs" / "20240101120000" / "network_train",
                    [(tag, s, 1 / s) for s in range(1, 40) for tag in ("train/loss", "train/lr")])
    result = gaze("report", str(run))
    (warning,) = [w for w in warnings_of(result) if "loss/current" in w]
    assert "no loss/current or loss/average in the logs; they hold 2 other tags: train/loss, train/lr" in warning
    assert "sd-scripts writes loss/current, loss/average, loss/epoch_average" in warning and "lr/<group>" in warning
    assert "they hold 2 other tags: train/loss, train/lr" in result.output.split("wrote ")[1]  # the verdict lines
    assert "they hold 2 other tags: train/loss, train/lr" in (run / "report.html").read_text()
    result = gaze("compare", str(run), str(other), "--out", "cmp")
    assert any("foreign: no loss/current" in w and "train/loss" in w for w in warnings_of(result))


# ---- 3. where a comparison may be written ---------------------------------------------------------------------------


def test_compare_never_writes_into_a_run_folder(gaze, run, other):
    gaze("report", str(run))
    before = (run / "plots" / "loss.png").read_bytes()
    for out in (run, run / "plots", run / "new" / "deeper"):
        line = one_error_line(gaze("compare", str(run), str(other), "--out", str(out)))
        assert f"is inside the run folder {run}" in line
    assert (run / "plots" / "loss.png").read_bytes() == before and not (run / "new").exists()
    assert not (run / "comparison.html").exists()


def test_compare_never_writes_into_a_run_folder_through_a_link(gaze, run, other, tmp_path):
    (tmp_path / "link").symlink_to(run)
    line = one_error_line(gaze("compare", str(run), str(other), "--out", str(tmp_path / "link" / "cmp")))
    assert "is inside the run folder" in line and not (run / "cmp").exists()


def test_compare_refuses_a_folder_that_holds_something_else(gaze, run, other):
    Path("mine").mkdir()
    Path("mine/notes.txt").write_text("keep")
    line = one_error_line(gaze("compare", str(run), str(other), "--out", "mine"))
    assert "is not empty and holds no earlier comparison" in line and os.listdir("mine") == ["notes.txt"]
    Path("file").write_text("x")
    result = gaze("compare", str(run), str(other), "--out", "file")  # click refuses it as a usage error
    assert result.exit_code == 2 and "Directory 'file' is a file" in result.output


def test_an_earlier_comparison_is_replaced_only_when_asked(gaze, run, other):
    assert gaze("compare", str(run), str(other), "--out", "cmp").exit_code == 0
    first = Path("cmp/comparison.html").read_text()
    line = one_error_line(gaze("compare", str(other), str(run), "--out", "cmp"))
    assert "holds an earlier comparison; pass --replace" in line
    assert Path("cmp/comparison.html").read_text() == first
    Path("cmp/notes.txt").write_text("keep")
    Path("cmp/plots/mine.png").write_bytes(b"keep")
    Path("cmp/plots/samples-p07.jpg").write_bytes(b"stale")  # a plot of the earlier comparison only
    result = gaze("compare", str(other), str(run), "--out", "cmp", "--replace")
    assert result.exit_code == 0, result.output
    assert Path("cmp/comparison.html").read_text() != first
    assert Path("cmp/notes.txt").read_text() == "keep" and Path("cmp/plots/mine.png").read_bytes() == b"keep"
    assert not Path("cmp/plots/samples-p07.jpg").exists()


def test_default_comparison_folders_never_collide(gaze, run, other):
    for _ in range(2):
        assert gaze("compare", str(run), str(other)).exit_code == 0
    folders = sorted(Path("comparisons").iterdir())
    assert len(folders) == 2 and all((f / "comparison.html").is_file() for f in folders)
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert compare.new_comparison_dir("c", now=now) != compare.new_comparison_dir("c", now=now)


# ---- 4. event files that are huge, sparse or lie about their length -----------------------------------------------


def test_a_20_gb_sparse_event_file(gaze, tmp_path, run):
    (events,) = (run / "logs").rglob("events.out.tfevents.*")
    real = events.stat().st_size
    with open(events, "r+b") as f:
        f.truncate(20 * 2**30)
    result = gaze("report", str(run))
    (warning,) = [w for w in warnings_of(result) if str(events) in w]
    assert f"record header CRC mismatch; the rest was not read at byte {real}" in warning
    assert f"({4 * N} rows read before it)" in warning
    assert "Convergence" in result.output


def test_a_record_whose_length_says_2_to_the_62(gaze, run):
    (events,) = (run / "logs").rglob("events.out.tfevents.*")
    real = events.stat().st_size
    with open(events, "ab") as f:
        f.write(struct.pack("<QI", 2**62, masked_crc(struct.pack("<Q", 2**62))) + b"\0" * 64)
    (warning,) = [w for w in warnings_of(gaze("report", str(run))) if str(events) in w]
    assert f"record length {2**62} is absurd" in warning and f"at byte {real}" in warning


def test_an_event_file_that_cannot_be_read(gaze, run):
    (events,) = (run / "logs").rglob("events.out.tfevents.*")
    events.unlink()
    events.symlink_to(events.parent)  # is_file() is False: not an event file at all
    odd = events.parent / "events.out.tfevents.2.host.1.0"
    odd.mkdir()
    result = gaze("report", str(run))
    assert result.exit_code == 0 and "No scalars in the logs" in (run / "report.html").read_text()


# ---- 5. paths that are not there, not folders, or not writable -------------------------------------------------------


def test_a_run_in_a_folder_that_does_not_exist(gaze):
    line = one_error_line(gaze("report", "/no/such/run"))
    assert "no run folder '/no/such/run'" in line
    assert "no run folder" in one_error_line(gaze("compare", "/no/such/run", "/no/such/other"))


def test_a_run_folder_that_is_a_file(gaze, tmp_path, run):
    Path("afile").write_text("x")
    assert "afile is a file, not a run folder" in one_error_line(gaze("report", "afile"))
    assert "afile is a file, not a run folder" in one_error_line(gaze("compare", str(run), "afile"))


@pytest.fixture
def deny_writes(request):
    """Make a file unwritable even for root (chattr +i where chmod is not enough); undone afterwards."""
    undo: list[Path] = []

    def deny(path: Path) -> None:
        path.chmod(0o444)
        try:
            with open(path, "r+b"):
                pass
        except PermissionError:
            return
        chattr = shutil.which("chattr")
        if not chattr or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode:
            pytest.skip("root writes any file, and chattr +i is not available here")
        undo.append(path)

    yield deny
    for path in undo:
        subprocess.run([shutil.which("chattr"), "-i", str(path)], check=True)


def test_permission_denied_on_report_html(gaze, run, deny_writes):
    (run / "report.html").write_text("old")
    deny_writes(run / "report.html")
    line = one_error_line(gaze("report", str(run)))
    assert f"cannot write {run / 'report.html'}" in line and "nothing was written" in line
    assert not (run / "plots").exists() and not (run / "report.md").exists()


def test_the_default_comparison_folder_is_never_made_inside_a_run(gaze, run, other, monkeypatch):
    monkeypatch.chdir(run)
    line = one_error_line(gaze("compare", str(run), str(other)))
    assert f"is inside the run folder {run}" in line and not (run / "comparisons").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_sample_that_is_a_fifo_or_a_folder_does_not_hang(gaze, run):
    (fifo, folder) = sorted((run / "output" / "sample").glob("*_000020_*.png"))
    fifo.unlink()
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    folder.unlink()
    folder.mkdir()
    warnings = warnings_of(gaze("report", str(run)))
    assert any(str(fifo) in w and "not a regular file" in w for w in warnings), warnings
    assert any(str(folder) in w and "unreadable sample image" in w for w in warnings), warnings
