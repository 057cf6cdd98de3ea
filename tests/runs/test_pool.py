"""The local pool with stand-in trainers (real processes, real locks, real signals): how many run at once,
their GPUs and ports, failures, Ctrl-C/SIGTERM and `gaze cancel`."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from recipes import builtin_registry
from wrapper.cli.training import PrefixPrinter
from wrapper.errors import RunError
from wrapper.runs import layout as runs
from wrapper.runs import watch
from wrapper.runs.pool import PoolItem, Slot, plan_slots, run_pool, visible_gpus
from wrapper.runs.sweeps import create_sweep, read_sweep
from wrapper.runs.train import RunRequest, launch

registry = builtin_registry()

STAND_IN = textwrap.dedent("""
    import json, os, sys, time, pathlib
    out, seconds, code = pathlib.Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    with open(out / "times.json", "w") as f:
        json.dump({"start": time.time(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}, f)
    print("ready", flush=True)
    time.sleep(seconds)
    if code == 0:
        (out / "lora.safetensors").write_bytes(b"x")
    with open(out / "end.json", "w") as f:
        json.dump({"end": time.time()}, f)
    sys.exit(code)
""")


def _pool(tmp_path: Path, plan: dict[str, tuple[float, int]], slots: list[Slot], *, sink_for=None, seen=None):
    """A sweep of stand-in runs: spec -> (seconds, exit code); returns (sweep_dir, items, run the pool)."""
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    specs = {spec: registry.resolve(spec) for spec in plan}
    sweep_dir, record = create_sweep(tmp_path / "runs", list(specs.items()), kind="queue", backend="local",
                                     parallel=len(slots))
    request = RunRequest(dataset=tmp_path, model=tmp_path / "m", runs_dir=tmp_path / "runs", cache_dir=tmp_path,
                         checkout=tmp_path)
    items = [PoolItem(spec, specs[spec], request, Path(m.run_dir)) for spec, m in zip(plan, record.members,
                                                                                     strict=True)]

    def start(recipe, request, *, log, on_line, run_dir, lock_fd, env):
        (run_dir / "output").mkdir()
        runs.write_run_info(run_dir, runs.RunInfo(model="m", output_name="lora", family="sd15", sd_scripts=".",
                                                  script="train_network.py", threads=request.threads or 1,
                                                  main_process_port=request.main_process_port))
        if seen is not None:
            seen.append((recipe.name, request, env))
        seconds, code = plan[recipe.name]
        argv = [sys.executable, str(script), str(run_dir / "output"), str(seconds), str(code)]
        return launch(run_dir, argv, tmp_path, on_line, launches=1, lock_fd=lock_fd, env=env)

    def go():
        return run_pool(items, slots, start=start, sink_for=sink_for or (lambda _s: lambda _l: None),
                        sweep=str(sweep_dir))

    return sweep_dir, items, go


def _most_at_once(run_dirs: list[Path]) -> int:
    spans = []
    for d in run_dirs:
        if (d / "output" / "end.json").is_file():
            spans.append((json.loads((d / "output" / "times.json").read_text())["start"],
                          json.loads((d / "output" / "end.json").read_text())["end"]))
    return max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)


def test_plan_slots():
    assert plan_slots(3, parallel=None, gpus_per_run=None, per_run=1, gpus=[], cores=8) == [Slot(0)]
    assert plan_slots(3, parallel=2, gpus_per_run=None, per_run=1, gpus=[], cores=8) == [Slot(0, (), 4),
                                                                                          Slot(1, (), 4)]
    assert plan_slots(1, parallel=4, gpus_per_run=None, per_run=1, gpus=[], cores=2) == [Slot(0, (), 2)]
    pool = plan_slots(9, parallel=None, gpus_per_run=2, per_run=2, gpus=list("01234"), cores=64)
    assert [s.gpus for s in pool] == [("0", "1"), ("2", "3")] and pool[0].threads == 8
    assert [s.gpus for s in plan_slots(9, parallel=3, gpus_per_run=None, per_run=1, gpus=list("0123"),
                                       cores=6)] == [("0",), ("1",), ("2",)]
    with pytest.raises(RunError, match=r"--parallel 3 runs of 2 GPU\(s\) need 6 GPUs but 4 are visible"):
        plan_slots(9, parallel=3, gpus_per_run=None, per_run=2, gpus=list("0123"), cores=8)
    with pytest.raises(RunError, match="--gpus-per-run 1 but the trainer sees no GPU"):
        plan_slots(9, parallel=None, gpus_per_run=1, per_run=1, gpus=[], cores=8)


def test_visible_gpus_come_from_cuda_visible_devices_without_a_probe(tmp_path):
    assert visible_gpus(tmp_path, {"CUDA_VISIBLE_DEVICES": "2, 3,-1,4"}) == ["2", "3"]
    assert visible_gpus(tmp_path, {"CUDA_VISIBLE_DEVICES": ""}) == []


def test_a_pool_runs_at_most_n_at_once_and_a_failure_stops_nothing(tmp_path):
    plan = {"sd15-smoke": (1.0, 0), "sd15-smoke+steps=2": (0.2, 1), "sd15-smoke+steps=3": (0.3, 0),
            "sd15-smoke+dim=2": (0.3, 0)}
    seen = []
    slots = [Slot(0, ("0", "1"), 3), Slot(1, ("2", "3"), 3)]
    sweep_dir, items, go = _pool(tmp_path, plan, slots, seen=seen)
    rows = go()
    assert [(r.spec, r.state) for r in rows] == [("sd15-smoke", "succeeded"), ("sd15-smoke+steps=2", "failed"),
                                                 ("sd15-smoke+steps=3", "succeeded"), ("sd15-smoke+dim=2", "succeeded")]
    assert _most_at_once([i.run_dir for i in items]) == 2
    ports = [request.main_process_port for _, request, _ in seen]
    assert all(ports) and all(request.threads == 3 for _, request, _ in seen)
    gpus = {json.loads((i.run_dir / "output" / "times.json").read_text())["cuda"] for i in items}
    assert gpus == {"0,1", "2,3"}
    for item in items:
        placement = runs.read_placement(item.run_dir)
        assert placement.sweep == str(sweep_dir) and placement.gpus in ("0,1", "2,3")
        assert json.loads((item.run_dir / runs.RUN).read_text())["main_process_port"] in ports
        assert runs.holder(item.run_dir) is None  # every lock released
    assert [m.spec for m in read_sweep(sweep_dir).members] == list(plan)


def test_parallel_output_is_prefixed_with_each_runs_name():
    out = io.StringIO()
    a, b = PrefixPrinter("sd15-smoke", 18, "cyan", out), PrefixPrinter("sd15-smoke+dim=2", 18, "green", out)
    a("loading")
    b("steps:  25%|##  | 1/4 [00:03<00:09,  3.00s/it, avr_loss=0.152]")
    b("steps:  25%|##  | 1/4 [00:03<00:09,  3.00s/it, avr_loss=0.152]")
    a("")
    assert out.getvalue().splitlines() == ["sd15-smoke         | loading",
                                           "sd15-smoke+dim=2   | step 1/4  loss 0.152  3.00s/it  elapsed 00:03"]


def test_sigterm_stops_every_running_member_and_starts_no_other(tmp_path):
    plan = {"sd15-smoke": (60, 0), "sd15-smoke+steps=2": (60, 0), "sd15-smoke+steps=3": (0.1, 0)}
    ready = []

    def sink_for(spec):
        def sink(line):
            if line == "ready":
                ready.append(spec)
                if len(ready) == 2:
                    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        return sink

    _, items, go = _pool(tmp_path, plan, [Slot(0, (), 1), Slot(1, (), 1)], sink_for=sink_for)
    begin = time.monotonic()
    rows = go()
    assert time.monotonic() - begin < 30
    assert [r.state for r in rows] == ["interrupted"] * 3
    assert "not started" in rows[2].message and not (items[2].run_dir / "output").exists()
    assert all(runs.read_status(i.run_dir).state == "interrupted" for i in items)


def test_cancel_stops_one_member_of_a_pool_and_skips_a_waiting_one(tmp_path):
    plan = {"sd15-smoke": (60, 0), "sd15-smoke+steps=2": (1.5, 0), "sd15-smoke+steps=3": (0.1, 0)}
    _, items, go = _pool(tmp_path, plan, [Slot(0, (), 1)])  # one at a time: the third waits
    done = []

    def cancel_them():
        deadline = time.monotonic() + 20
        while runs.read_status(items[0].run_dir).state != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        done.append(watch.cancel(items[2].run_dir, log=lambda _m: None))  # waiting: marked, never started
        time.sleep(0.3)
        done.append(watch.cancel(items[0].run_dir, log=lambda _m: None))  # running: its trainer's group

    canceller = threading.Thread(target=cancel_them)
    canceller.start()
    rows = go()
    canceller.join()
    assert [r.state for r in rows] == ["interrupted", "succeeded", "interrupted"]
    assert "before it started" in rows[2].message and not (items[2].run_dir / "output").exists()
    assert [v.state for v in done[1]] == ["interrupted"]


def test_cancel_of_a_whole_local_sweep_signals_the_gaze_process_that_holds_it(tmp_path):
    plan = {"sd15-smoke": (60, 0), "sd15-smoke+steps=2": (60, 0)}
    sweep_dir, items, go = _pool(tmp_path, plan, [Slot(0, (), 1), Slot(1, (), 1)])
    views = []

    def cancel_all():
        deadline = time.monotonic() + 20
        while any(runs.read_status(i.run_dir).state != "running" for i in items) and time.monotonic() < deadline:
            time.sleep(0.05)
        views.extend(watch.cancel(sweep_dir, log=lambda _m: None))

    threading.Thread(target=cancel_all).start()
    rows = go()
    assert [r.state for r in rows] == ["interrupted", "interrupted"]
    deadline = time.monotonic() + 10
    while len(views) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [v.state for v in views] == ["interrupted", "interrupted"]
