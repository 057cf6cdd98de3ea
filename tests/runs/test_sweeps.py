"""A sweep's folder and record, queued members, `gaze status` / `gaze cancel` views, the Slurm backend's
pieces that need no cluster (squeue and scancel are stand-in scripts on PATH), and the CLI's choices."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from runfactory import converging, make_run

from recipes import builtin_registry
from wrapper.cli import main
from wrapper.errors import RunError
from wrapper.files import write_json
from wrapper.runs import layout as runs
from wrapper.runs import slurm, sweeps, watch
from wrapper.runs.train import RunRequest, start_run
from wrapper.settings import SlurmSettings

registry = builtin_registry()


def _sweep(tmp_path: Path, specs=("sd15-smoke", "sd15-smoke+steps=2"), backend="local"):
    return sweeps.create_sweep(tmp_path / "runs", [(s, registry.resolve(s)) for s in specs], kind="sweep",
                               backend=backend, parallel=2, baseline="sd15-smoke", variants=specs[1:])


def test_a_sweep_folder_records_its_design_and_queued_members(tmp_path):
    sweep_dir, record = _sweep(tmp_path)
    assert sweep_dir.parent == (tmp_path / "runs" / "sweeps").resolve() and sweeps.is_sweep_dir(sweep_dir)
    again = sweeps.read_sweep(sweep_dir)
    assert again == record and again.seeds == [42] and again.baseline == "sd15-smoke"
    assert again.variants == ["sd15-smoke+steps=2"] and again.backend == "local" and again.parallel == 2
    for member, spec in zip(again.members, ("sd15-smoke", "sd15-smoke+steps=2"), strict=True):
        run_dir = Path(member.run_dir)
        assert run_dir.parent.name == spec and runs.read_recipe_record(run_dir).name == spec
        assert json.loads((run_dir / runs.STATUS).read_text())["state"] == "queued"
        assert sweeps.sweep_of(run_dir) == sweep_dir
    record = sweeps.with_submission(sweep_dir, "12", {record.members[1].run_dir: "12_0"})
    assert record.submissions == ["12"] and [m.job for m in record.members] == [None, "12_0"]


def test_a_broken_sweep_record_is_one_clear_error(tmp_path):
    sweep_dir, _ = _sweep(tmp_path)
    data = json.loads((sweep_dir / sweeps.SWEEP).read_text())
    write_json(sweep_dir / sweeps.SWEEP, {**data, "membres": []})
    with pytest.raises(RunError, match=r"unknown key 'membres' \(did you mean 'members'\?\)"):
        sweeps.read_sweep(sweep_dir)
    write_json(sweep_dir / sweeps.SWEEP, {**data, "members": [{"spec": "x"}]})
    with pytest.raises(RunError, match=r"members\[0\]"):
        sweeps.read_sweep(sweep_dir)
    with pytest.raises(RunError, match="is not a sweep folder"):
        sweeps.read_sweep(tmp_path)


def test_a_queued_member_that_fails_its_checks_keeps_its_folder(tmp_path, image_dir):
    _, record = _sweep(tmp_path, specs=("sd15-smoke",))
    run_dir = Path(record.members[0].run_dir)
    request = RunRequest(dataset=image_dir, model=tmp_path / "missing.safetensors", runs_dir=tmp_path / "runs",
                         cache_dir=tmp_path / "cache", checkout=tmp_path)
    with pytest.raises(RunError, match="does not exist"):
        start_run(registry.resolve("sd15-smoke"), request, log=lambda _m: None, run_dir=run_dir)
    status = runs.read_status(run_dir)
    assert run_dir.is_dir() and status.state == "failed" and status.failure_class == "configuration"
    assert "does not exist" in status.message and status.ended_at


def _fake_slurm(tmp_path: Path, monkeypatch, squeue: str) -> Path:
    """squeue and scancel stand-ins on PATH (the process boundary); scancel records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "squeue").write_text(f"#!/bin/sh\ncat <<'EOF'\n{squeue}\nEOF\n")
    (bin_dir / "scancel").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/scancelled\n")
    for name in ("squeue", "scancel"):
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "scancelled"


def test_status_reads_the_run_folders_and_squeue(tmp_path, monkeypatch):
    sweep_dir, record = _sweep(tmp_path, specs=("sd15-smoke", "sd15-smoke+steps=2", "sd15-smoke+steps=3"),
                               backend="slurm")
    sweeps.with_submission(sweep_dir, "12", {m.run_dir: f"12_{i}" for i, m in enumerate(record.members)})
    first, second, third = record.member_dirs()
    runs.write_run_info(first, runs.RunInfo(model="m", output_name="lora", family="sd15", sd_scripts=".",
                                            script="train_network.py", max_train_steps=40))
    make_run(tmp_path / "scratch", loss=converging(30))
    (first / "logs").mkdir()
    os.replace(tmp_path / "scratch/sd15-standard/20240101T120000Z-a1b2c3/logs/20240101120000", first / "logs" / "a")
    runs.write_status(first, runs.Status("running", started_at=runs.utc_now(), launches=1))
    runs.write_status(third, runs.Status("running", started_at=runs.utc_now(), launches=1))
    with runs.run_lock(first, purpose="training"):
        _fake_slurm(tmp_path, monkeypatch, "12_0|RUNNING|node7|None\n12_1|PENDING||JobArrayTaskLimit")
        views = watch.views_for(sweep_dir)
    assert [(v.state, v.where) for v in views] == [("running", "slurm 12_0 on node7"), ("queued", "slurm 12_1"),
                                                   ("lost", "slurm 12_2")]
    assert views[0].step == 30 and views[0].total == 40 and 0.05 < views[0].loss < 0.5
    assert "JobArrayTaskLimit" in views[1].message and "is gone" in views[2].message
    table = watch.format_views(views)
    assert table.splitlines()[0].split() == ["run", "state", "where", "step", "loss", "elapsed", "folder"]
    assert "30/40" in table
    result = CliRunner().invoke(main, ["status", str(sweep_dir)])
    assert result.exit_code == 0 and "on Slurm (array 12, 2 at once)" in result.output
    assert "JobArrayTaskLimit" not in result.output and "sd15-smoke+steps=3" in result.output


def test_cancel_a_slurm_sweep_scancels_its_array_and_marks_every_run(tmp_path, monkeypatch):
    sweep_dir, record = _sweep(tmp_path, backend="slurm")
    sweeps.with_submission(sweep_dir, "12", {m.run_dir: f"12_{i}" for i, m in enumerate(record.members)})
    scancelled = _fake_slurm(tmp_path, monkeypatch, "")  # the jobs have left the queue
    views = watch.cancel(sweep_dir, log=lambda _m: None)
    assert scancelled.read_text().split() == ["12"]
    assert [v.state for v in views] == ["interrupted", "interrupted"]
    assert all("gaze cancel" in runs.read_status(d).message for d in record.member_dirs())
    assert watch.cancel(sweep_dir, log=lambda _m: None)[0].state == "interrupted"  # nothing left: no error


def test_a_slurm_member_is_not_lost_while_slurm_holds_it(tmp_path):
    _, record = _sweep(tmp_path, backend="slurm")
    assert runs.read_status(record.member_dirs()[0]).state == "queued"  # no gaze process owns it yet
    _, local = _sweep(tmp_path)
    assert runs.read_status(local.member_dirs()[0]).state == "lost"  # a local one needs its gaze process


def test_submitit_parameters_come_from_the_slurm_settings():
    params = slurm.submitit_parameters(SlurmSettings(partition="gpu", qos="high", time_min=90, gpus_per_run=2,
                                                     cpus_per_run=16, mem_gb=80, setup=("module load cuda",)),
                                       name="gaze-x", parallel=3)
    assert params == {"name": "gaze-x", "timeout_min": 90, "nodes": 1, "tasks_per_node": 1, "cpus_per_task": 16,
                      "mem_gb": 80, "slurm_array_parallelism": 3, "gpus_per_node": 2, "slurm_partition": "gpu",
                      "slurm_qos": "high", "slurm_setup": ["module load cuda"]}
    assert "gpus_per_node" not in slurm.submitit_parameters(SlurmSettings(gpus_per_run=0), name="g", parallel=1)


@pytest.fixture
def cli(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SD_SCRIPTS_DIR", raising=False)
    return lambda *a: CliRunner().invoke(main, list(a))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--partition", "gpu"], "--partition is for --on slurm"),
        (["--on", "slurm", "--parallel", "2"], "--parallel is for --on local"),
        (["--on", "slurm", "--gpus", "2"], "--gpus-per-run (or [slurm] gpus_per_run) sets each run's GPUs"),
        (["--gpus", "2", "--gpus-per-run", "2"], "not both"),
        (["--gpus-per-run", "0"], "--gpus-per-run 0 (CPU only) is for --on slurm"),
    ],
)
def test_execution_flags_that_do_not_fit_the_backend_are_refused(cli, args, message):
    result = cli("queue", "sd15-smoke", *args)
    assert result.exit_code == 2 and message in result.output


def test_on_slurm_without_submitit_says_how_to_install_it(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now raises ImportError
    with pytest.raises(RunError, match=r"needs submitit, which is not installed: pip install -e '\.\[slurm\]'"):
        slurm.require_submitit()


def test_compare_takes_a_sweep_folder_for_all_its_members(cli, tmp_path):
    sweep_dir, record = _sweep(tmp_path)
    for run_dir, seed in zip(record.member_dirs(), (1, 2), strict=True):
        made = make_run(tmp_path / "made" / str(seed), loss=converging(40, seed))
        for path in made.iterdir():
            os.replace(path, run_dir / path.name)
    result = cli("compare", str(sweep_dir), "--out", str(tmp_path / "cmp"))
    assert result.exit_code == 0, result.output
    assert "comparison.html" in result.output and (tmp_path / "cmp" / "comparison.md").is_file()


def test_runs_side_by_side_get_their_own_accelerate_port(tmp_path):
    from wrapper.kohya.argv import accelerate_argv

    argv = accelerate_argv("/py", "train_network.py", Path("c.toml"), mixed_precision="no", threads=1,
                           main_process_port=29517)
    assert argv[argv.index("--main_process_port") + 1] == "29517" and argv.index("--main_process_port") < argv.index(
        "train_network.py")
    assert "--main_process_port" not in accelerate_argv("/py", "s.py", Path("c"), mixed_precision="no", threads=1)
    run_dir = runs.new_run_dir(tmp_path, "x")
    info = runs.RunInfo(model="m", output_name="lora", family="sd15", sd_scripts=".", script="train_network.py")
    write_json(run_dir / runs.RUN, {**info.__dict__, "main_process_port": 70000})
    with pytest.raises(RunError, match="main_process_port"):
        runs.read_run_info(run_dir)


def test_a_requeued_member_continues_from_wherever_it_stopped(tmp_path, monkeypatch):
    """continue_run: nothing after success; trained anew (earlier files set aside) when no state was saved."""
    from wrapper.runs import resume

    _, record = _sweep(tmp_path, specs=("sd15-smoke",))
    run_dir = record.member_dirs()[0]
    runs.write_run_info(run_dir, runs.RunInfo(model="m", output_name="lora", family="sd15", sd_scripts=".",
                                              script="train_network.py", max_train_steps=4))
    (run_dir / "output").mkdir()
    (run_dir / "output" / "lora-step00000002.safetensors").write_bytes(b"2")  # saved; its state was not
    runs.write_status(run_dir, runs.Status("interrupted", launches=1))
    launched = []

    def fake_launch(run_dir, argv, checkout, on_line, *, launches, lock_fd, env):
        launched.append((argv, launches, lock_fd))
        return resume.Outcome(run_dir, runs.Status("succeeded", launches=launches), None, 1.0)

    monkeypatch.setattr(resume, "launch", fake_launch)
    request = RunRequest(dataset=tmp_path, model=tmp_path, runs_dir=tmp_path, cache_dir=tmp_path, checkout=tmp_path)
    outcome = resume.continue_run(run_dir, registry.resolve("sd15-smoke"), request, lock_fd=7, log=lambda _m: None)
    assert outcome.status.state == "succeeded" and launched[0][1:] == (2, 7)
    assert "--resume" not in launched[0][0] and not (run_dir / "output" / "lora-step00000002.safetensors").exists()
    assert list((run_dir / "output").glob("superseded-*/lora-step00000002.safetensors"))
    runs.write_status(run_dir, runs.Status("succeeded", launches=2))
    again = resume.continue_run(run_dir, registry.resolve("sd15-smoke"), request, lock_fd=7, log=lambda _m: None)
    assert again.status.state == "succeeded" and len(launched) == 1


def test_replicates_share_spec_and_prepared_data_and_differ_in_seed(tmp_path):
    recipe = registry.resolve("sd15-smoke+validation")
    seeded = sweeps.with_seeds(recipe, sweeps.seeds_from("3", recipe.training.seed))
    members = [(spec, r) for spec in ("sd15-smoke+validation",) for r in seeded]
    sweep_dir, record = sweeps.create_sweep(tmp_path / "runs", members, kind="sweep", backend="local", parallel=1,
                                            baseline="sd15-smoke+validation")
    again = sweeps.read_sweep(sweep_dir)
    assert again.seeds == [42, 43, 44] and [m.seed for m in again.members] == [42, 43, 44]
    assert {m.spec for m in again.members} == {"sd15-smoke+validation"}
    recorded = [runs.read_recipe_record(Path(m.run_dir)).recipe for m in again.members]
    assert [r["training"]["seed"] for r in recorded] == [42, 43, 44]
    assert len({json.dumps(r["prep"], sort_keys=True) for r in recorded}) == 1  # same prepared images
    assert {r["data"]["validation_seed"] for r in recorded} == {recipe.data.validation_seed}  # same hold-out


@pytest.mark.parametrize(("text", "expected"), [("1", [42]), ("3", [42, 43, 44]), ("7,1,9", [7, 1, 9])])
def test_seeds_are_a_count_from_the_recipes_seed_or_a_list(text, expected):
    assert sweeps.seeds_from(text, 42) == expected


@pytest.mark.parametrize(("text", "message"), [("0", "count from 1 to 100"), ("x", "expected a count"),
                                               ("1,1", "distinct seeds"), ("1,-2", "distinct seeds")])
def test_a_bad_seeds_option_is_refused_before_anything_starts(cli, text, message):
    result = cli("sweep", "sd15-smoke", "crop-flip", "--seeds", text)
    assert result.exit_code == 1 and message in result.output and not (Path("runs")).exists()


def test_a_sweep_record_with_a_bad_member_seed_is_refused(tmp_path):
    sweep_dir, _ = _sweep(tmp_path)
    data = json.loads((sweep_dir / sweeps.SWEEP).read_text())
    data["members"][0]["seed"] = "42"
    write_json(sweep_dir / sweeps.SWEEP, data)
    with pytest.raises(RunError, match=r"members\[0\].*seed"):
        sweeps.read_sweep(sweep_dir)


def test_replicates_are_told_apart_by_seed_in_status(tmp_path):
    recipe = registry.resolve("sd15-smoke")
    sweep_dir, record = sweeps.create_sweep(tmp_path / "runs", [("sd15-smoke", r) for r in
                                                                sweeps.with_seeds(recipe, [42, 43])],
                                            kind="sweep", backend="local", parallel=1, baseline="sd15-smoke")
    assert [v.name for v in watch.view_sweep(sweep_dir)] == ["sd15-smoke seed=42", "sd15-smoke seed=43"]
    single, _ = _sweep(tmp_path / "single")
    assert [v.name for v in watch.view_sweep(single)] == ["sd15-smoke", "sd15-smoke+steps=2"]
