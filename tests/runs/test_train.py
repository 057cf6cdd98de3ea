"""Runs without the real trainer: argv, judging outcomes, failure classes, resume planning, queues."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from recipes import builtin_registry
from wrapper.cli import main
from wrapper.cli.training import ProgressPrinter
from wrapper.errors import GazeError, RunError
from wrapper.files import write_json
from wrapper.kohya.argv import accelerate_argv, resume_args
from wrapper.kohya.failures import classify
from wrapper.kohya.models import checkpoint_family
from wrapper.runs import layout as runs
from wrapper.runs.inputs import check_model
from wrapper.runs.queue import format_table, run_queue
from wrapper.runs.resume import continuity, plan_resume, resume_run, set_aside_later_files
from wrapper.runs.train import (
    Outcome,
    RunRequest,
    check_version,
    device_problems,
    launch,
    resolve_attention,
    resolve_checkpointing,
    start_run,
)

pytestmark = pytest.mark.usefixtures("stand_in_trainer")  # stand-in scripts, not sd-scripts

registry = builtin_registry()
CPU = {"cuda_available": False, "device_count": 0, "xformers": False, "bf16": True, "gpus": []}
GPU = {"cuda_available": True, "device_count": 1, "xformers": True, "bf16": True, "gpus": ["H200"]}


def safetensors_with(path: Path, keys: list[str]) -> Path:
    header = json.dumps({k: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
                         for i, k in enumerate(keys)}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4 * len(keys))
    return path


def test_accelerate_argv_is_explicit():
    argv = accelerate_argv("/py", "train_network.py", Path("/r/config.toml"), mixed_precision="bf16", threads=4)
    assert argv == ["/py", "-m", "accelerate.commands.launch", "--num_cpu_threads_per_process", "4",
                    "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "bf16",
                    "--dynamo_backend", "no", "train_network.py", "--config_file", "/r/config.toml"]
    multi = accelerate_argv("/py", "s.py", Path("c"), mixed_precision="no", threads=2, gpus=2,
                            extra=resume_args(Path("/s")))
    assert "--multi_gpu" in multi and multi[-3:] == ["--resume", "/s", "--skip_until_initial_step"]


@pytest.mark.parametrize(
    ("log", "code", "kind"),
    [
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate", 1, "out-of-memory"),
        ("AssertionError: image too large, but cropping and bucketing are disabled", 1, "data"),
        ("No data found. Please verify arguments", 0, "data"),
        ("ModuleNotFoundError: No module named 'xformers'", 1, "missing-dependency"),
        ("ValueError: constant does not require num_warmup_steps", 1, "configuration"),
        ("", -9, "out-of-memory"),
        ("Segmentation fault", 139, "other"),
        ("", 2, "other"),
    ],
)
def test_failures_are_classified_from_the_log(log, code, kind):
    failure = classify(f"loading...\n{log}\n", code)
    assert failure.kind == kind and failure.suggestion
    assert (log or f"exit code {code}") in failure.evidence


def test_checkpoint_family(tmp_path):
    sd15 = safetensors_with(tmp_path / "a.safetensors", ["cond_stage_model.transformer.text_model.x"])
    sdxl = safetensors_with(tmp_path / "b.safetensors", ["conditioner.embedders.1.model.x"])
    sd2 = safetensors_with(tmp_path / "c.safetensors", ["cond_stage_model.model.transformer.x"])
    assert [checkpoint_family(p) for p in (sd15, sdxl, sd2)] == ["sd15", "sdxl", "sd2"]
    diffusers = tmp_path / "d"
    diffusers.mkdir()
    (diffusers / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    assert checkpoint_family(diffusers) == "sdxl"
    with pytest.raises(RunError, match="does not exist"):
        checkpoint_family(tmp_path / "missing.safetensors")


def test_wrong_family_needs_the_deliberate_modifier(tmp_path):
    sdxl = safetensors_with(tmp_path / "xl.safetensors", ["conditioner.embedders.1.model.x"])
    sd2 = safetensors_with(tmp_path / "v2.safetensors", ["cond_stage_model.model.transformer.x"])
    with pytest.raises(RunError, match="is an SDXL checkpoint but recipe 'sd15-standard' trains SD1.x"):
        check_model(registry.resolve("sd15-standard"), sdxl)
    with pytest.raises(RunError, match="cannot load it"):
        check_model(registry.resolve("sd15-standard+mismatched-base"), sdxl)
    assert check_model(registry.resolve("sd15-standard+mismatched-base"), sd2).training.v2


def test_device_rules():
    request = RunRequest(dataset=Path("d"), model=Path("m"), runs_dir=Path("r"), cache_dir=Path("c"),
                         checkout=Path("s"), gpus=2)
    problems = device_problems(registry.resolve("sd15-standard"), CPU, request)
    assert any("--gpus 2 but the trainer sees 0 GPU(s)" in p for p in problems)
    fp16 = registry.resolve("sd15-standard")
    fp16 = fp16.replace(training=fp16.training.__class__(**{**fp16.training.__dict__, "mixed_precision": "fp16"}))
    assert any("without a GPU" in p for p in device_problems(fp16, CPU, RunRequest(
        dataset=Path("d"), model=Path("m"), runs_dir=Path("r"), cache_dir=Path("c"), checkout=Path("s"))))
    assert resolve_attention(fp16, CPU) == "sdpa" and resolve_attention(fp16, GPU) == "xformers"


def _run_dir(tmp_path: Path, max_steps: int = 4) -> Path:
    run_dir = runs.new_run_dir(tmp_path / "runs", "sd15-smoke")
    (run_dir / "output").mkdir()
    runs.write_recipe_record(run_dir, runs.RecipeRecord(name="sd15-smoke"))
    runs.write_run_info(run_dir, runs.RunInfo(model=str(tmp_path / "m.safetensors"), output_name="lora",
                                              family="sd15", max_train_steps=max_steps, sd_scripts=str(tmp_path),
                                              script="train_network.py", threads=2, mixed_precision="bf16"))
    write_json(run_dir / runs.COMMAND, {"argv": ["py", "train_network.py"]})
    runs.write_status(run_dir, runs.Status("failed", launches=1))
    return run_dir


STAND_IN = textwrap.dedent("""
    import sys, pathlib
    out, write_final, code, text = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), sys.argv[4]
    print(text)
    if write_final:
        pathlib.Path(out, "lora.safetensors").write_bytes(b"x")
    sys.exit(code)
""")


@pytest.mark.parametrize(
    ("write_final", "code", "text", "state", "kind"),
    [
        ("1", 0, "model saved.", "succeeded", None),
        ("0", 0, "No data found. Please verify arguments", "failed", "data"),
        ("0", 1, "torch.OutOfMemoryError: CUDA out of memory", "failed", "out-of-memory"),
    ],
)
def test_a_run_succeeds_only_when_its_final_lora_exists(tmp_path, write_final, code, text, state, kind):
    run_dir = _run_dir(tmp_path)
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    argv = [sys.executable, str(script), str(run_dir / "output"), write_final, str(code), text]
    outcome = launch(run_dir, argv, tmp_path, lambda _line: None, launches=1)
    status = runs.read_status(run_dir)
    assert (status.state, status.failure_class, status.exit_code) == (state, kind, code)
    assert outcome.status == status and status.started_at and status.ended_at
    assert text in (run_dir / "train.log").read_text()
    if state == "failed" and code == 0:
        assert "exit code 0 but no lora.safetensors was saved" in status.message


def test_new_run_dirs_are_never_reused(tmp_path):
    made = {runs.new_run_dir(tmp_path, "x") for _ in range(30)}
    assert len(made) == 30 and all(p.is_dir() and p.parent == tmp_path / "x" for p in made)


def _state(run_dir: Path, name: str, step: int, *, complete: bool = True) -> None:
    """A saved state as accelerate and sd-scripts leave it (or, incomplete, only train_state.json)."""
    folder = run_dir / "output" / name
    folder.mkdir()
    (folder / "train_state.json").write_text(json.dumps({"current_epoch": 1, "current_step": step}))
    for name in ("model.safetensors", "optimizer.bin", "scheduler.bin") if complete else ():
        (folder / name).write_bytes(b"x")


def test_resume_plans_from_the_newest_state_and_sets_later_files_aside(tmp_path):
    run_dir = _run_dir(tmp_path, max_steps=6)
    with pytest.raises(RunError, match="no saved state"):
        plan_resume(run_dir)
    _state(run_dir, "lora-step00000002-state", 2)
    _state(run_dir, "lora-step00000004-state", 4)
    _state(run_dir, "lora-step00000005-state", 5, complete=False)  # killed while saving: not resumable
    (run_dir / "output" / "lora-step00000004.safetensors").write_bytes(b"4")
    (run_dir / "output" / "lora-step00000006.safetensors").write_bytes(b"6")  # saved, its state was not
    step, state, argv = plan_resume(run_dir)
    assert step == 4 and state.name == "lora-step00000004-state"
    assert argv[-3:] == ["--resume", str(state), "--skip_until_initial_step"]
    assert argv[1:5] == ["-m", "accelerate.commands.launch", "--num_cpu_threads_per_process", "2"]
    assert argv[-6:-3] == ["train_network.py", "--config_file", str(run_dir / "config.toml")]
    moved = set_aside_later_files(run_dir, step)
    assert sorted(p.name for p in moved) == ["lora-step00000005-state", "lora-step00000006.safetensors"]
    assert (run_dir / "output" / "lora-step00000004.safetensors").read_bytes() == b"4"


def test_resume_refuses_finished_runs(tmp_path):
    run_dir = _run_dir(tmp_path, max_steps=4)
    _state(run_dir, "lora-state", 4)
    with pytest.raises(RunError, match="nothing to resume"):
        plan_resume(run_dir)
    runs.write_status(run_dir, runs.Status("succeeded", message="done"))
    with pytest.raises(RunError, match="already finished"):
        plan_resume(run_dir)
    with pytest.raises(RunError, match="not a gaze run directory"):
        plan_resume(tmp_path)


def _events(folder: Path, steps: range) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    folder.mkdir(parents=True)
    writer = EventFileWriter(str(folder))
    for step in steps:
        value = summary_pb2.Summary.Value(tag="loss/current", simple_value=1.0 / step)
        writer.add_event(event_pb2.Event(step=step, wall_time=1.0 * step, summary=summary_pb2.Summary(value=[value])))
    writer.close()


def test_continuity_is_checked_against_the_tensorboard_steps(tmp_path):
    run_dir = _run_dir(tmp_path)
    _events(run_dir / "logs" / "20260101000000" / "network_train", range(1, 8))
    _events(run_dir / "logs" / "20260101010000" / "network_train", range(7, 10))
    assert continuity(run_dir, 6).startswith("continuous from step 7; steps 7-7 of the interrupted launch")
    assert continuity(run_dir, 4).startswith("broken: resumed from the state at step 4")


def test_queue_keeps_going_and_tabulates(tmp_path):
    run_dir = _run_dir(tmp_path)
    runs.write_status(run_dir, runs.Status("succeeded", message="ok"))

    def start(spec: str) -> Outcome:
        if spec == "bad":
            raise GazeError("model missing")
        return Outcome(run_dir, runs.read_status(run_dir), None, 12.0)

    rows = run_queue(["bad", "good"], start, log=lambda _m: None)
    assert [(r.spec, r.state, r.failure_class) for r in rows] == [("bad", "failed", "configuration"),
                                                                  ("good", "succeeded", None)]
    table = format_table(rows)
    assert table.splitlines()[0].split() == ["run", "status", "failure", "final", "loss", "time", "directory"]
    assert "configuration" in table and "12 s" in table


def test_progress_printer_condenses_the_bar():
    out = io.StringIO()
    printer = ProgressPrinter(out)
    for line in ["loading", "steps:  25%|##  | 1/4 [00:03<00:09,  3.00s/it, avr_loss=0.152]",
                 "steps:  25%|##  | 1/4 [00:03<00:09,  3.00s/it, avr_loss=0.152]", "saving"]:
        printer(line)
    assert out.getvalue().splitlines() == ["loading", "step 1/4  loss 0.152  3.00s/it  elapsed 00:03", "saving"]


@pytest.fixture
def cli(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for var in ("SD_SCRIPTS_DIR", "GAZE_DATASET", "GAZE_MODEL_SD15", "GAZE_RECIPES", "GAZE_SETTINGS"):
        monkeypatch.delenv(var, raising=False)
    return lambda *a: CliRunner().invoke(main, list(a))


def test_run_without_a_checkout_says_what_to_do(cli, image_dir):
    result = cli("run", "sd15-smoke", "--dataset", str(image_dir), "--model", "/m.safetensors")
    assert result.exit_code == 1 and "make vendor" in result.output and "SD_SCRIPTS_DIR" in result.output


def test_run_bad_inputs_fail_before_anything_is_created(cli, image_dir, tmp_path, monkeypatch):
    fake = tmp_path / "sd-scripts"
    for name in ("train_network.py", "sdxl_train_network.py", "gen_img.py", "library/train_util.py"):
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text("")
    monkeypatch.setenv("SD_SCRIPTS_DIR", str(fake))
    sdxl = safetensors_with(tmp_path / "xl.safetensors", ["conditioner.embedders.1.model.x"])
    sd15 = safetensors_with(tmp_path / "v1.safetensors", ["cond_stage_model.transformer.x"])
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--model", str(tmp_path / "nope.safetensors"), "--dataset", str(image_dir)], "does not exist"),
        (["--model", str(sdxl), "--dataset", str(image_dir)], "mismatched-base modifier"),
        (["--model", str(sd15), "--dataset", str(empty)], "no images"),
        (["--model", str(sd15), "--dataset", str(tmp_path / "missing")], "missing"),
    ]
    for args, message in cases:
        result = cli("run", "sd15-smoke", "--runs-dir", str(tmp_path / "runs"), *args)
        assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "runs").exists()
    result = cli("resume", str(tmp_path))
    assert result.exit_code == 1 and "not a gaze run directory" in result.output


def test_a_checkout_of_another_version_is_refused():
    from wrapper.kohya.interface import committed_interface

    facts = committed_interface()
    check_version(facts, Path("/sd"))  # the pinned interface passes
    facts["scripts"]["train_network.py"] = {**facts["scripts"]["train_network.py"], "new_flag": {}}
    with pytest.raises(RunError, match=r"is not v0.10.1 .*new_flag"):
        check_version(facts, Path("/sd"))


def test_gradient_checkpointing_follows_the_memory():
    sdxl, sd15 = registry.resolve("sdxl-standard"), registry.resolve("sd15-standard")
    assert resolve_checkpointing(sdxl, CPU) and not resolve_checkpointing(sd15, CPU)
    assert not resolve_checkpointing(sdxl, {**GPU, "memory_gib": 139.8})
    assert resolve_checkpointing(sdxl, {**GPU, "memory_gib": 23.6})
    forced = sdxl.replace(training=sdxl.training.__class__(**{**sdxl.training.__dict__,
                                                             "gradient_checkpointing": False}))
    assert not resolve_checkpointing(forced, {**GPU, "memory_gib": 8})


def test_resume_never_executes_command_json(tmp_path):
    """command.json is a record for people: a tampered one changes nothing that gaze launches."""
    run_dir = _run_dir(tmp_path, max_steps=6)
    _state(run_dir, "lora-step00000002-state", 2)
    write_json(run_dir / runs.COMMAND, {"argv": ["sh", "-c", "touch /tmp/pwned"], "cwd": "/"})
    _, _, argv = plan_resume(run_dir)
    assert "sh" not in argv and "touch /tmp/pwned" not in argv and argv[0] == sys.executable
    info = json.loads((run_dir / runs.RUN).read_text())
    write_json(run_dir / runs.RUN, {**info, "script": "../../evil.py"})
    with pytest.raises(RunError, match="key 'script' is '../../evil.py'"):
        plan_resume(run_dir)
    write_json(run_dir / runs.RUN, {**info, "gpus": "2; rm -rf /"})
    with pytest.raises(RunError, match="key 'gpus'"):
        plan_resume(run_dir)


def test_a_run_lock_is_exclusive_and_names_its_holder(tmp_path):
    run_dir = _run_dir(tmp_path)
    with runs.run_lock(run_dir, purpose="training") as fd:
        assert isinstance(fd, int)
        assert runs.holder(run_dir).startswith(f"pid {os.getpid()} on ")
        with pytest.raises(RunError, match=rf"is in use by pid {os.getpid()} on .*training since"), \
                runs.run_lock(run_dir, purpose="training"):
            pass
        with pytest.raises(RunError, match="in use by"):  # resume refuses a run that is being trained
            resume_run(run_dir, log=lambda _m: None, on_line=lambda _l: None)
        with pytest.raises(RunError, match="in use by"), runs.run_lock(run_dir, purpose="generation", shared=True):
            pass  # and so does generation (a shared lock)
    assert runs.holder(run_dir) is None
    with runs.run_lock(run_dir, purpose="generation", shared=True), \
            runs.run_lock(run_dir, purpose="generation", shared=True):
        assert runs.holder(run_dir) is None  # readers do not make a run "running"


def test_a_running_run_without_its_gaze_process_is_lost(tmp_path):
    run_dir = _run_dir(tmp_path)
    runs.write_status(run_dir, runs.Status("running", started_at="2026-01-01T00:00:00+00:00", launches=1))
    with runs.run_lock(run_dir, purpose="training"):
        assert runs.read_status(run_dir).state == "running"
    lost = runs.read_status(run_dir)
    assert lost.state == "lost" and "gaze resume" in lost.message
    assert json.loads((run_dir / runs.STATUS).read_text())["state"] == "running"  # the record is not rewritten


def _ckpt(path: Path, keys: list[str], *, zipped: bool = True) -> Path:
    """A pickled checkpoint as torch.save writes one: {'state_dict': {key: ...}} (zip) or a bare pickle."""
    import pickle
    import zipfile

    data = pickle.dumps({"state_dict": dict.fromkeys(keys, 0)})
    if zipped:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", data)
    else:
        path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C) + data + b"\0" * 64)
    return path


def test_pickled_checkpoints_are_identified_without_unpickling(tmp_path):
    assert checkpoint_family(_ckpt(tmp_path / "a.ckpt", ["cond_stage_model.transformer.text_model.x"])) == "sd15"
    assert checkpoint_family(_ckpt(tmp_path / "b.ckpt", ["conditioner.embedders.1.model.x"], zipped=False)) == "sdxl"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.safetensors", b"", "is empty"),
        ("short.safetensors", b"\x01\x02", "too short"),
        ("huge-header.safetensors", struct.pack("<Q", 10**12) + b"{}", "its header claims 1000000000000 bytes"),
        ("not-json.safetensors", struct.pack("<Q", 4) + b"\xff\xfe{[", "its header is not JSON"),
        ("list.safetensors", struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        ("random.safetensors", bytes(range(256)) * 8, "not a safetensors file"),
        ("random.ckpt", bytes(range(256)) * 8, "found none"),
        ("unet-only.safetensors", None, "found model.diffusion_model.input_blocks.0.weight"),
        ("model.gguf", b"GGUF", "expected a .safetensors or .ckpt file"),
    ],
)
def test_a_model_gaze_cannot_identify_is_refused_with_what_was_found(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        safetensors_with(path, ["model.diffusion_model.input_blocks.0.weight"])
    else:
        path.write_bytes(content)
    with pytest.raises(RunError, match=re.escape(message)):
        checkpoint_family(path)


def test_a_queue_with_an_unreadable_model_goes_on_and_ends_with_its_table(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"")
    recipe = builtin_registry().resolve("sd15-smoke")

    def start(model: Path):
        return start_run(recipe, RunRequest(dataset=tmp_path, model=model, runs_dir=tmp_path / "runs",
                                            cache_dir=tmp_path / "cache", checkout=tmp_path), log=lambda _m: None)

    rows = run_queue([bad, tmp_path / "missing.safetensors"], start, log=lambda _m: None, label=lambda p: p.name)
    assert [(r.spec, r.state, r.failure_class) for r in rows] == [
        ("bad.safetensors", "failed", "configuration"), ("missing.safetensors", "failed", "configuration")]
    assert "is empty" in rows[0].message and "does not exist" in rows[1].message
    assert "bad.safetensors" in format_table(rows)


def test_a_mismatched_base_that_is_the_recipes_own_checkpoint_is_refused(tmp_path):
    from wrapper.errors import ConfigError
    from wrapper.runs.train import request_for
    from wrapper.settings import Settings

    own = safetensors_with(tmp_path / "sd15.safetensors", ["cond_stage_model.transformer.text_model.x"])
    other = safetensors_with(tmp_path / "other.safetensors", ["cond_stage_model.transformer.text_model.x"])
    settings = Settings(dataset=tmp_path, models={"sd15": own, "same": own, "other": other})
    registry = builtin_registry()
    for spec in ("sd15-standard+mismatched-base=same", "sd15-standard+mismatched-base=sd15"):
        with pytest.raises(ConfigError, match="is the sd15 checkpoint it would train on anyway"):
            request_for(registry.resolve(spec), settings, tmp_path)
    assert request_for(registry.resolve("sd15-standard+mismatched-base=other"), settings, tmp_path).model == other
