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


def test_a_sweep_with_seeds_and_validation_gives_an_experiment_report(paths, tmp_path):
    """sd15-smoke with a validation hold-out, and its crop-flip glitch, 2 seeds each, on 4 of the demo photos:
    the split is made clean (1 image held out, 3 trained on, so epoch 1 ends at step 3), validation runs
    every step and at each epoch end, the pool runs two at once, and the experiment report gives intervals
    over the seeds."""
    from wrapper.curves import verdicts
    from wrapper.kohya.logs import VAL_EPOCH, VAL_STEP
    from wrapper.reports.run import write_report

    photos = tmp_path / "photos"
    photos.mkdir()
    for image in sorted(Path(paths[1]).glob("*.png"))[:4]:
        for path in (image, image.with_suffix(".txt")):
            (photos / path.name).write_bytes(path.read_bytes())
    begin = time.monotonic()
    output = gaze("sweep", "sd15-smoke+validation=0.1:1", "crop-flip", "--seeds", "2", "--parallel", "2",
                  *paths[2:], "--dataset", str(photos))
    print(f"\nsweep of 2 variants x 2 seeds with validation: {time.monotonic() - begin:.0f} s")
    sweep_dir = _sweep_dir(output)
    record = sweeps.read_sweep(sweep_dir)
    assert record.seeds == [42, 43] and [m.seed for m in record.members] == [42, 43, 42, 43]
    members = record.member_dirs()  # a local pool: two at once, each with its share of the cores and its own port
    assert record.backend == "local" and record.parallel == 2 and len(members) == 4
    spans = _spans(members)
    assert max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans) == 2
    infos = [runs.read_run_info(d) for d in members]
    assert {i.threads for i in infos} == {max(1, (os.cpu_count() or 1) // 2)}
    assert len({i.main_process_port for i in infos}) == 4 and None not in {i.main_process_port for i in infos}
    assert re.search(r"^sd15-smoke\+validation=0\.1:1 seed=43 +\| ", output, re.M)
    assert "validation split 0.1 -> 0.3125" in output and "1 of 4 images held out" in output
    for member in record.members:
        run_dir = Path(member.run_dir)
        assert runs.read_status(run_dir).state == "succeeded"
        config = (run_dir / "config.toml").read_text()
        assert f"seed = {member.seed}\n" in config and "validate_every_n_steps = 1\n" in config
        assert "validation_split = 0.3125" in (run_dir / "dataset.toml").read_text()
        frame = runs.read_run_scalars(run_dir)
        val = frame[frame["tag"] == VAL_STEP].set_index("step")["value"]
        epoch = frame[frame["tag"] == VAL_EPOCH].set_index("step")["value"]
        assert val.index.tolist() == [1, 2, 3, 4] and epoch.index.tolist() == [1, 2]
        # the same weights and validation seed: a step pass at an epoch's last step equals that epoch's pass,
        # which proves the running averages were read back as each pass's own mean
        assert val[3] == pytest.approx(epoch[1], rel=1e-4) and val[4] == pytest.approx(epoch[2], rel=1e-4)
        assert any("running average" in note for note in frame.attrs["notes"])
    view_dir = record.member_dirs()[0]
    write_report(view_dir)
    md = (view_dir / "report.md").read_text()
    assert "plots/validation.png" in md and (view_dir / "plots" / "validation.png").is_file()
    overfit = next(v for v in verdicts.verdicts(runs.read_run_scalars(view_dir)) if v.metric == "Over-fitting")
    assert overfit.status not in ("not measurable", "too few points") and VAL_STEP in overfit.notes
    report = gaze("report", str(sweep_dir))
    assert "beyond seed noise:" in report
    experiment = (sweep_dir / "report.md").read_text()
    row = next(line for line in experiment.split("### final validation loss", 1)[1].splitlines()
               if line.startswith("| sd15-smoke+validation=0.1:1+crop-flip |"))
    assert re.search(r"\| 2 \| [-0-9.e]+ \[[-0-9.e]+, [-0-9.e]+\] \| [-0-9.e]+ \[[-0-9.e]+, [-0-9.e]+\] \| ", row), row
    assert "seeds: 42, 43" in experiment and "Welch's t" in experiment
