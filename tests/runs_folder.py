"""A runs folder of twenty varied runs and three sweeps, with what `gaze runs` should say about each.

Runs are made with runfactory's make_run (real event files), then given the status, placement, lock
and damage the spec says. Every loss curve is a constant level (TensorBoard's smoothing leaves one
unchanged) except one falling ramp, whose smoothed end is computed here from the formula.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import runfactory as rf

from wrapper.runs import layout, sweeps


@dataclass(frozen=True)
class Spec:
    recipe: str
    glitches: tuple[str, ...] = ()
    tweaks: tuple[str, ...] = ()
    seed: int = 42
    state: str = "succeeded"  # as status.json says; `expected_state` is what gaze shows
    hours_ago: float = 1.0  # when it started (or its folder was made); all different
    minutes: float | None = 30.0  # how long it ran; None: has not ended
    level: float | None = None  # constant loss logged for `steps` steps; None: no event files
    steps: int = 0
    total: int = 100
    ramp: bool = False  # a falling ramp instead of a constant level
    held: bool = False  # a live gaze process holds its lock
    slurm: bool = False  # queued on Slurm (Slurm holds it)
    report: bool = False  # has report.html
    damage: str | None = None  # "recipe": recipe.json is not JSON; "status": status.json has wrong types

    @property
    def name(self) -> str:
        return "+".join([self.recipe, *self.glitches, *self.tweaks])


SPECS = (
    Spec("sd15-standard", seed=1, hours_ago=50, level=0.30, steps=100, report=True),
    Spec("sd15-standard", seed=2, hours_ago=49, level=0.28, steps=100, report=True),
    Spec("sd15-standard", ("high-lr=3e-4",), seed=1, hours_ago=48, level=0.45, steps=100, report=True),
    Spec("sd15-standard", ("high-lr=3e-4",), seed=2, state="failed", hours_ago=47, minutes=5, level=0.9, steps=20),
    Spec("sd15-standard", ("no-bucket",), seed=1, hours_ago=46, level=0.35, steps=100),
    Spec("sd15-standard", ("no-bucket",), ("steps=1200",), seed=1, hours_ago=30, minutes=60, level=0.25,
         steps=120, total=120),
    Spec("sd15-standard", (), ("lr=5e-5",), seed=3, hours_ago=26, minutes=45, steps=80, total=80, ramp=True),
    Spec("sdxl-standard", hours_ago=25, minutes=90, level=0.2, steps=100),
    Spec("sdxl-standard", ("crop-flip",), state="interrupted", hours_ago=24, minutes=12, level=0.22, steps=50),
    Spec("sdxl-standard", ("crop-flip",), ("dim=192",), seed=7, hours_ago=23, level=0.21, steps=100),
    Spec("sdxl-standard", ("caption-dropout=0.1",), state="failed", hours_ago=20, minutes=1),
    Spec("sd15-uncropped", hours_ago=12, minutes=40, level=0.33, steps=100, report=True),
    Spec("sd15-uncropped", ("overtrain=10000",), state="interrupted", hours_ago=10, minutes=20, level=0.5,
         steps=30, total=10000),
    Spec("sd15-smoke", seed=0, hours_ago=6, minutes=2, level=0.6, steps=4, total=4),
    Spec("sd15-smoke", ("high-lr=2e-4",), seed=0, state="failed", hours_ago=5, minutes=1, damage="status"),
    Spec("sd15-standard", ("high-lr=2e-4", "crop-flip"), seed=5, state="running", hours_ago=3, minutes=None,
         level=0.4, steps=40, held=True),
    Spec("sd15-standard", ("crop-flip",), seed=1, state="running", hours_ago=2, minutes=None, level=0.41, steps=10),
    Spec("sdxl-standard", ("no-bucket",), state="queued", hours_ago=1, minutes=None, held=True),
    Spec("sdxl-standard", ("high-lr=3e-4",), state="queued", hours_ago=0.5, minutes=None, slurm=True),
    Spec("sd15-standard", ("jpeg-inject=0.25:10",), hours_ago=15, level=0.3, steps=100, damage="recipe"),
)


def ramp(n: int) -> np.ndarray:
    return np.linspace(0.5, 0.3, n)


def smoothed_end(values: np.ndarray, weight: float = 0.6) -> float:
    """TensorBoard's debiased exponential moving average at the last point, from its formula."""
    x = np.asarray(values, dtype=np.float32).astype(float)  # event files hold float32
    n = len(x)
    weights = (1 - weight) * weight ** np.arange(n - 1, -1, -1)
    return float((weights * x).sum() / (1 - weight**n))


def stamp(now: datetime, spec: Spec, i: int) -> str:
    return f"{(now - timedelta(hours=spec.hours_ago)):%Y%m%dT%H%M%SZ}-{i:06x}"


def make_runs_folder(root: Path, now: datetime, stack: ExitStack) -> list[Path]:
    """`root` as a runs folder with a run for every spec (in SPECS order) and three sweeps; the locks of
    held runs stay held until `stack` closes."""
    made = []
    for i, spec in enumerate(SPECS):
        loss = ramp(spec.steps) if spec.ramp else [spec.level] * spec.steps if spec.level is not None else None
        run = rf.make_run(root, spec.name, stamp=stamp(now, spec, i), loss=loss, state=spec.state,
                          modifiers=[*spec.glitches, *spec.tweaks], glitches=list(spec.glitches),
                          values={"training": {"max_train_steps": spec.total, "seed": spec.seed}})
        run_status(run, spec, now)
        if spec.held:
            stack.enter_context(layout.run_lock(run, purpose="training"))
        if spec.slurm:
            layout.write_placement(run, layout.Placement(backend="slurm", slurm_job="4242_1"))
        if spec.report:
            (run / "report.html").write_text("<!DOCTYPE html><title>report</title>", encoding="utf-8")
        if spec.damage == "recipe":
            (run / layout.RECIPE).write_text('{"name": "sd15-standard+jpeg', encoding="utf-8")
        made.append(run)
    make_sweeps(root, made, now)
    return made


def run_status(run: Path, spec: Spec, now: datetime) -> None:
    if spec.damage == "status":
        (run / layout.STATUS).write_text(json.dumps({"state": "exploded", "started_at": 5}), encoding="utf-8")
        return
    started = None if spec.state == "queued" else now - timedelta(hours=spec.hours_ago)
    ended = None if spec.minutes is None or started is None else started + timedelta(minutes=spec.minutes)
    layout.write_status(run, layout.Status(
        spec.state, started and started.isoformat(), ended and ended.isoformat(),
        None if ended is None else int(spec.state != "succeeded"), launches=1))


SWEEP_REPORTED, SWEEP_QUEUE, SWEEP_BROKEN = ("20260101T000000Z-aaaaaa", "20260101T000001Z-bbbbbb",
                                             "20260101T000002Z-cccccc")


def make_sweeps(root: Path, made: list[Path], now: datetime) -> None:
    """A sweep of the first four runs (with a report), a queue of the two queued runs, a broken sweep.json."""
    folder = root / sweeps.SWEEPS
    for name, members, kind in ((SWEEP_REPORTED, (0, 1, 2, 3), "sweep"), (SWEEP_QUEUE, (17, 18), "queue")):
        (folder / name).mkdir(parents=True)
        record = sweeps.SweepRecord(
            kind=kind, baseline="sd15-standard" if kind == "sweep" else None,
            variants=["high-lr=3e-4"] if kind == "sweep" else [SPECS[i].name for i in members],
            seeds=sorted({SPECS[i].seed for i in members}),
            members=[sweeps.Member(spec=SPECS[i].name, run_dir=str(made[i].resolve())) for i in members],
            created_at=now.isoformat(),
        )
        sweeps.write_sweep(folder / name, record)
    (folder / SWEEP_REPORTED / "report.html").write_text("<!DOCTYPE html><title>experiment</title>")
    (folder / SWEEP_BROKEN).mkdir()
    (folder / SWEEP_BROKEN / sweeps.SWEEP).write_text("{", encoding="utf-8")


def expected_state(spec: Spec) -> str | None:
    if spec.damage == "status":
        return None
    if spec.state in ("queued", "running") and not spec.held and not spec.slurm:
        return "lost"
    return spec.state


def expected(spec: Spec, i: int, now: datetime) -> dict:
    """What `gaze runs --json` should say about run `i` (the keys that do not depend on the clock)."""
    damaged = spec.damage == "recipe"
    loss = smoothed_end(ramp(spec.steps)) if spec.ramp else \
        float(np.float32(spec.level)) if spec.level is not None else None
    started = None if spec.state == "queued" or spec.damage == "status" else now - timedelta(hours=spec.hours_ago)
    return {
        "run": f"{spec.name}/{stamp(now, spec, i)}",
        "recipe": spec.recipe,
        "glitches": [] if damaged else list(spec.glitches),
        "tweaks": [] if damaged else list(spec.tweaks),
        "seed": None if damaged else spec.seed,
        "state": expected_state(spec),
        "step": spec.steps or None,
        "total": None if damaged else spec.total,
        "loss": loss,
        "duration_s": spec.hours_ago * 3600.0 if expected_state(spec) == "running" else  # until `now`
        None if spec.minutes is None or started is None else spec.minutes * 60.0,
        "started": started and started.isoformat(),
    }
