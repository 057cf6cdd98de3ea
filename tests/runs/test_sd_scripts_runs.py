"""Real training runs with sd-scripts on the CPU: random full-size weights, synthetic photos, a few steps.

Model building is cached in $GAZE_TEST_CACHE (default .cache/test) so later sessions reuse it.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import struct
from pathlib import Path

import pytest
import runfactory as rf
import toml

from recipes import builtin_registry
from wrapper.kohya.checkout import find_checkout
from wrapper.runs import layout as runs
from wrapper.runs.queue import run_queue
from wrapper.runs.resume import resume_run
from wrapper.runs.train import RunRequest, launch, prepare_run, start_run

pytestmark = [pytest.mark.sd_scripts, pytest.mark.slow]
registry = builtin_registry()
CACHE = Path(os.environ.get("GAZE_TEST_CACHE", Path(__file__).parents[2] / ".cache" / "test"))
SPEED = re.compile(r"(\d+)/(\d+) \[[^\]]*?([\d.]+)s/it")


def assets(family: str):
    from wrapper.demo.assets import ensure_demo_assets

    return ensure_demo_assets(CACHE, family, log=lambda _m: None)


def request(tmp_path: Path, family: str, **changes) -> RunRequest:
    a = assets(family)
    values = dict(dataset=a.dataset_dir, model=a.model_path, runs_dir=tmp_path / "runs", cache_dir=CACHE,
                  checkout=find_checkout(), tokenizer_cache_dir=a.tokenizer_cache_dir, threads=2)
    return RunRequest(**{**values, **changes})


def report(outcome, label: str) -> None:
    """Print the figures worth recording: s/step (tqdm's average) and the peak RSS of any child so far."""
    log = (outcome.run_dir / "train.log").read_text(errors="replace")
    speeds = SPEED.findall(log)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    print(f"\n{label}: {outcome.status.state} in {outcome.duration_s:.0f} s, "
          f"{speeds[-1][2] if speeds else '?'} s/step, peak child RSS so far {peak:.2f} GiB")


def steps_logged(run_dir: Path) -> list[int]:
    from wrapper.kohya.logs import LOSS_CURRENT
    from wrapper.runs.layout import read_run_scalars

    frame = read_run_scalars(run_dir)
    return sorted(frame[frame["tag"] == LOSS_CURRENT]["step"].astype(int).tolist())


def lora_steps(path: Path) -> int:
    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    return int(header["__metadata__"]["ss_steps"])


def test_sd15_recipe_trains_and_records_everything(tmp_path):
    outcome = start_run(registry.resolve("sd15-smoke"), request(tmp_path, "sd15"), log=print, on_line=lambda _l: None)
    report(outcome, "sd15-smoke")
    run_dir = outcome.run_dir
    assert outcome.status.state == "succeeded", (run_dir / "train.log").read_text()[-3000:]
    for name in ("recipe.json", "run.json", "command.json", "environment.json", "manifest.json", "status.json",
                 "dataset.toml", "config.toml", "sample_prompts.txt", "train.log"):
        assert (run_dir / name).is_file(), name
    output = run_dir / "output"
    assert {p.name for p in output.glob("*.safetensors")} == {
        "sd15-smoke.safetensors", "sd15-smoke-step00000002.safetensors", "sd15-smoke-step00000004.safetensors"}
    assert len(list((output / "sample").glob("*.png"))) == 2
    assert steps_logged(run_dir) == [1, 2, 3, 4]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert len(manifest["files"]) == 16 and all(len(f["sha256"]) == 64 for f in manifest["files"])
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["packages"]["torch"] and env["device"]["cuda_available"] is False
    assert env["sd_scripts"]["interface"] == "identical to v0.10.1 (ae72efb92)"
    command = json.loads((run_dir / "command.json").read_text())["argv"]
    assert command[1:3] == ["-m", "accelerate.commands.launch"] and "train_network.py" in command
    args = toml.load(run_dir / "config.toml")
    assert args["training"]["sdpa"] is True and args["training"]["cache_latents"] is True
    assert args["training"]["max_token_length"] == 150  # the synthetic captions run past 75 tokens
    from wrapper.runs.trackers import read_hparams  # the run in TensorBoard's HParams dashboard

    session = read_hparams(run_dir / "hparams")
    assert session["hparams"]["recipe"] == "sd15-smoke" and session["hparams"]["state"] == "succeeded"
    assert session["metrics"]["gaze/final_loss"] > 0


def test_sdxl_recipe_trains_unet_only_with_cached_text_encoder_outputs(tmp_path):
    outcome = start_run(registry.resolve("sdxl-smoke"), request(tmp_path, "sdxl"), log=print,
                        on_line=lambda _l: None)
    report(outcome, "sdxl-smoke")
    assert outcome.status.state == "succeeded", (outcome.run_dir / "train.log").read_text()[-3000:]
    args = toml.load(outcome.run_dir / "config.toml")
    assert args["training"]["cache_text_encoder_outputs"] and args["network"]["network_train_unet_only"]
    assert args["training"]["mixed_precision"] == "bf16" and args["training"]["full_bf16"]
    assert json.loads((outcome.run_dir / "run.json").read_text())["script"] == "sdxl_train_network.py"
    assert lora_steps(outcome.run_dir / "output" / "sdxl-smoke.safetensors") == 4


def test_gaze_killed_with_sigkill_leaves_no_trainer_and_resumes(tmp_path):
    """SIGKILL the `gaze run` process mid-run: its trainer is stopped with it, the run shows as lost,
    and `gaze resume` continues from the newest state with the steps numbered on."""
    import subprocess
    import sys
    import time

    a = assets("sd15")
    env = {**os.environ, "GAZE_CACHE_DIR": str(CACHE), "GAZE_TOKENIZER_CACHE_DIR": str(a.tokenizer_cache_dir)}
    gaze = [sys.executable, "-c", "from wrapper.cli import main; main()"]
    proc = subprocess.Popen([*gaze, "run", "sd15-smoke+steps=6", "--dataset", str(a.dataset_dir), "--model",
                             str(a.model_path), "--runs-dir", str(tmp_path / "runs"), "--threads", "2"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = None
    for line in proc.stdout:
        if line.startswith("run directory: "):
            run_dir = Path(line.split(": ", 1)[1].strip())
        if line.startswith("step 3/6"):
            proc.kill()
            break
    proc.wait()
    assert run_dir is not None and proc.returncode == -9
    deadline = time.monotonic() + 60
    while rf.trainers([run_dir]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rf.trainers([run_dir]) == [], "the trainer outlived gaze"
    status = runs.read_status(run_dir)
    assert status.state == "lost" and "gaze resume" in status.message
    assert "is gone: stopping the trainer" in (run_dir / "train.log").read_text(errors="replace")
    assert [s for s, _ in runs.saved_states(run_dir)] == [2]
    first = run_dir / "output" / "sd15-smoke_steps-6-step00000002.safetensors"
    before = first.stat().st_mtime_ns
    resumed = resume_run(run_dir, log=print, on_line=lambda _l: None)
    report(resumed, "resumed after gaze was killed")
    assert resumed.status.state == "succeeded" and resumed.status.launches == 2
    # "continuous: ... right after the saved state", or "continuous from step 3" when step 3 was logged
    # before the kill: either way the resumed steps follow the state's
    assert resumed.notes[0].startswith("continuous"), resumed.notes
    assert first.stat().st_mtime_ns == before  # the earlier checkpoint was not rewritten
    assert lora_steps(run_dir / "output" / "sd15-smoke_steps-6.safetensors") == 6
    assert steps_logged(run_dir) == [1, 2, 3, 4, 5, 6]  # stitched: the re-trained steps replace the lost ones


def test_queue_keeps_going_after_a_failed_run(tmp_path):
    broken = tmp_path / "broken.safetensors"
    header = json.dumps({"cond_stage_model.transformer.x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    broken.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0" * 4)

    def start(spec: str):
        name, _, which = spec.partition("@")
        model = broken if which == "broken" else assets("sd15").model_path
        return start_run(registry.resolve(name), request(tmp_path, "sd15", model=model), log=print,
                         on_line=lambda _l: None)

    rows = run_queue(["sd15-smoke@broken", "sd15-smoke"], start, log=print)
    assert [r.state for r in rows] == ["failed", "succeeded"]
    assert rows[0].failure_class in ("configuration", "other") and rows[0].run_dir is not None
    assert rows[1].final_loss is not None

    # the reports of real runs: one that trained, one that failed before its first step
    from wrapper.reports.compare import write_comparison
    from wrapper.reports.run import write_report

    written = {p.name for p in write_report(rows[1].run_dir).paths}
    assert {"report.html", "report.md", "loss.png", "lr.png", "samples.jpg"} <= written
    html = (rows[1].run_dir / "report.html").read_text()
    assert "Final loss" in html and "data:image/png;base64," in html and "sd15-smoke" in html
    compared = {p.name for p in write_comparison([rows[0].run_dir, rows[1].run_dir], tmp_path / "cmp")}
    assert {"comparison.html", "comparison.md"} <= compared
    assert "failed" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_no_images_exit_zero_is_reported_as_a_failure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths too: sd-scripts runs in its own checkout
    data = assets("sd15").dataset_dir
    relative = request(tmp_path, "sd15", runs_dir=Path("runs"), dataset=Path(os.path.relpath(data, tmp_path)))
    run_dir, argv, _ = prepare_run(registry.resolve("sd15-smoke"), relative, print)
    subset = toml.load(run_dir / "dataset.toml")["datasets"][0]["subsets"][0]
    assert run_dir.is_absolute() and Path(subset["image_dir"]).is_absolute()
    empty = tmp_path / "empty"
    empty.mkdir()
    dataset = run_dir / "dataset.toml"
    config = toml.load(dataset)
    dataset.write_text(dataset.read_text().replace(config["datasets"][0]["subsets"][0]["image_dir"], str(empty)))
    outcome = launch(run_dir, argv, find_checkout(), lambda _l: None, launches=1)
    assert outcome.status.exit_code == 0
    assert outcome.status.state == "failed" and outcome.status.failure_class == "data"
    assert "exit code 0 but no sd15-smoke.safetensors was saved" in outcome.status.message


def test_ctrl_c_marks_the_run_interrupted_and_its_state_resumes(tmp_path):
    recipe = registry.resolve("sd15-smoke+steps=6")
    run_dir, argv, _ = prepare_run(recipe, request(tmp_path, "sd15"), print)
    sent = []

    def press_ctrl_c(line: str) -> None:  # as a terminal would: SIGINT to gaze, which forwards it
        if not sent and line.lstrip().startswith("steps:") and " 3/" in line:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    stopped = launch(run_dir, argv, find_checkout(), press_ctrl_c, launches=1)
    report(stopped, "sd15-smoke+steps=6 (Ctrl-C)")
    assert stopped.status.state == "interrupted" and "gaze resume" in stopped.status.message
    assert runs.read_status(run_dir).state == "interrupted"
    resumed = resume_run(run_dir, log=print, on_line=lambda _l: None)
    assert resumed.status.state == "succeeded", (run_dir / "train.log").read_text()[-3000:]
    assert lora_steps(run_dir / "output" / "sd15-smoke_steps-6.safetensors") == 6
