"""Sweeps with the real trainer on the CPU: a local pool of two at once, and a Slurm job array on a
one-node cluster (scripts/slurm-cluster) with a requeued task, `gaze status`, the reports, and `gaze cancel`.

The smallest runs that still save a state: sd15-smoke trains 4 steps with a state every 2, its
steps=2 variants 2 steps. Two trainers at once need about 17 GiB.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import runfactory as rf
from click.testing import CliRunner

from wrapper.cli import main
from wrapper.runs import layout as runs
from wrapper.runs import sweeps, watch

pytestmark = [pytest.mark.sd_scripts, pytest.mark.slow]
CACHE = Path(os.environ.get("GAZE_TEST_CACHE", Path(__file__).parents[2] / ".cache" / "test"))


def assets():
    from wrapper.demo.assets import ensure_demo_assets

    return ensure_demo_assets(CACHE, "sd15", log=lambda _m: None)


def gaze(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output[-4000:]
    return result.output


@pytest.fixture
def paths(tmp_path, monkeypatch) -> list[str]:
    """The data, model and runs folder of a sweep; the settings a Slurm task inherits from its submitter."""
    a = assets()
    monkeypatch.setenv("GAZE_CACHE_DIR", str(CACHE.resolve()))
    monkeypatch.setenv("GAZE_TOKENIZER_CACHE_DIR", str(a.tokenizer_cache_dir))
    return ["--dataset", str(a.dataset_dir), "--model", str(a.model_path), "--runs-dir", str(tmp_path / "runs")]


def _sweep_dir(output: str) -> Path:
    return Path(next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("sweep: ")))


def _spans(run_dirs: list[Path]) -> list[tuple[datetime, datetime]]:
    statuses = [runs.read_status(d) for d in run_dirs]
    return [(datetime.fromisoformat(s.started_at), datetime.fromisoformat(s.ended_at)) for s in statuses]


def _steps_logged(run_dir: Path) -> list[int]:
    from wrapper.kohya.logs import LOSS_CURRENT

    frame = runs.read_run_scalars(run_dir)
    return sorted(frame[frame["tag"] == LOSS_CURRENT]["step"].astype(int).tolist())


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def test_a_local_pool_runs_two_at_once_each_with_its_share_of_the_cores(paths):
    begin = time.monotonic()
    output = gaze("sweep", "sd15-smoke+steps=2", "dim=2", "lr=5e-5", "--parallel", "2", *paths)
    record = sweeps.read_sweep(_sweep_dir(output))
    members = record.member_dirs()
    print(f"\nlocal pool of 3 at --parallel 2: {time.monotonic() - begin:.0f} s")
    assert record.backend == "local" and record.parallel == 2 and len(members) == 3
    assert all(runs.read_status(d).state == "succeeded" for d in members)
    spans = _spans(members)
    assert max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans) == 2  # two at once, never three
    infos = [runs.read_run_info(d) for d in members]
    assert {i.threads for i in infos} == {max(1, (os.cpu_count() or 1) // 2)}
    assert len({i.main_process_port for i in infos}) == 3 and None not in {i.main_process_port for i in infos}
    assert re.search(r"^sd15-smoke\+steps=2\+dim=2 +\| ", output, re.M) and output.count("succeeded") >= 3


@pytest.mark.slurm
def test_a_slurm_sweep_is_one_job_array_that_survives_a_requeue(paths, slurm_cluster):
    """sd15-smoke and two steps=2 variants as 3 array tasks, 2 at once; the 4-step baseline's task is
    requeued after its step-2 state: it comes back and resumes with the steps numbered on."""
    from wrapper.reports.run import write_report

    begin = time.monotonic()
    output = gaze("sweep", "sd15-smoke", "steps=2", "steps=2+lr=5e-5", "--on", "slurm", "--max-parallel", "2",
                  "--gpus-per-run", "0", "--cpus-per-run", "1", "--mem-gb", "9", "--time-min", "15", *paths)
    sweep_dir = _sweep_dir(output)
    record = sweeps.read_sweep(sweep_dir)
    base = record.member_dirs()[0]
    assert record.backend == "slurm" and len(record.submissions) == 1 and record.parallel == 2
    script = (sweep_dir / "slurm" / f"{record.submissions[0]}_submission.sh").read_text()
    assert "#SBATCH --array=0-2%2" in script and "#SBATCH --time=15" in script
    _wait(lambda: any(s == 2 for s, _ in runs.saved_states(base)), 300, "the baseline's step-2 state")
    status = gaze("status", str(sweep_dir))
    assert "running" in status and f"slurm {record.members[0].job} on " in status
    first = base / "output" / "sd15-smoke-step00000002.safetensors"
    saved = first.stat().st_mtime_ns
    subprocess.run(["scontrol", "requeue", record.members[0].job], check=True, timeout=60)
    views = watch.wait_for_sweep(sweep_dir, poll_s=3, timeout_s=600)
    print(f"\nSlurm sweep of 3 at parallelism 2 with a requeue: {time.monotonic() - begin:.0f} s")
    assert [v.state for v in views] == ["succeeded"] * 3, [v.message for v in views]
    assert runs.read_status(base).launches == 2 and os.environ.get("SLURM_CONF")
    assert json.loads((base / runs.RESUME).read_text())["continuity"].startswith("continuous")
    assert first.stat().st_mtime_ns == saved  # the earlier checkpoint was not rewritten
    assert _steps_logged(base) == [1, 2, 3, 4]
    for run_dir in record.member_dirs():
        assert runs.final_lora(run_dir, runs.read_run_info(run_dir).output_name).is_file()
        assert runs.read_placement(run_dir).slurm_job in {m.job for m in record.members}
        assert {"report.html", "report.md"} <= {p.name for p in write_report(run_dir).paths}
    final = gaze("status", str(sweep_dir))
    assert final.count("succeeded") == 3 and "4/4" in final


@pytest.mark.slurm
def test_gaze_cancel_stops_a_running_slurm_sweep(paths, slurm_cluster):
    output = gaze("sweep", "sd15-smoke", "steps=2", "--on", "slurm", "--max-parallel", "1", "--gpus-per-run", "0",
                  "--cpus-per-run", "1", "--mem-gb", "9", "--time-min", "15", *paths)
    sweep_dir = _sweep_dir(output)
    members = sweeps.read_sweep(sweep_dir).member_dirs()
    _wait(lambda: rf.trainers(members[:1]), 180, "the first trainer")
    cancelled = gaze("cancel", str(sweep_dir))
    assert "scancel" in cancelled
    assert [runs.read_status(d).state for d in members] == ["interrupted", "interrupted"]
    assert rf.trainers(members) == []
    _wait(lambda: not watch.slurm.task_states(sweeps.read_sweep(sweep_dir).submissions), 60, "the jobs to leave")
