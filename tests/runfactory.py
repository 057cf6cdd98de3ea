"""Build run folders the way the launcher and sd-scripts lay them out, with real files.

Event files come from tensorboard's own writers with sd-scripts' tag names; sample images are
PNGs written with Pillow under sd-scripts' file names. Loss curves of known shape live here too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

WALL0 = 1.7e9
PROMPTS = (
    "a photo of sks shape on a table --n blurry --w 128 --h 128 --d 1 --l 7 --s 4 --ss euler_a",
    "# comment lines do not count",
    "",
    "sks shape in the snow --d 2 --s 4",
)


# ---- curves of known shape -----------------------------------------------------------------------


def noise(n: int, sigma: float = 0.01, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, sigma, n)


def converging(n: int, seed: int = 0) -> np.ndarray:
    """Fast exponential decay to 0.1, flat for the last two thirds."""
    x = np.arange(n)
    return 0.1 + 0.2 * np.exp(-x / (n / 12)) + noise(n, 0.01, seed)


def still_decreasing(n: int, seed: int = 0) -> np.ndarray:
    x = np.arange(n)
    return 0.3 - 0.2 * x / n + noise(n, 0.005, seed)


def plateau_then_drop(n: int, seed: int = 0) -> np.ndarray:
    """Falls, stays flat through the middle third, falls again, then levels off."""
    x = np.arange(n) / n
    level = np.interp(x, [0, 0.2, 0.55, 0.75, 1.0], [0.3, 0.2, 0.2, 0.1, 0.1])
    return level + noise(n, 0.005, seed)


def spiking(n: int, seed: int = 0, at: Sequence[int] = (300, 600)) -> np.ndarray:
    y = converging(n, seed)
    for i in at:
        y[i] += 1.0
    return y


def diverging(n: int, seed: int = 0) -> np.ndarray:
    x = np.arange(n) / n
    return 0.1 + 0.4 * x**2 + noise(n, 0.01, seed)


def oscillating(n: int, seed: int = 0) -> np.ndarray:
    x = np.arange(n) / n
    return 0.15 + 0.05 * np.sin(2 * math.pi * 4 * x) + noise(n, 0.005, seed)


# ---- event files ---------------------------------------------------------------------------------


def write_events(
    folder: Path,
    points: Sequence[tuple[str, int, float]],
    *,
    tensor: bool = False,
    wall0: float = WALL0,
) -> Path:
    """Write (tag, step, value) points in order into a new event file in `folder`; return it.

    Simple values are what sd-scripts writes (torch's SummaryWriter); `tensor=True` uses
    tensorboard.summary.Writer, which stores each scalar as a float32 tensor. Wall time grows by
    one second per point.
    """
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.glob("events.out.tfevents.*"))
    if tensor:
        from tensorboard.summary import Writer

        writer = Writer(str(folder))
        for i, (tag, step, value) in enumerate(points):
            writer.add_scalar(tag, value, step, wall_time=wall0 + i)
        writer.close()
    else:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        writer = EventFileWriter(str(folder), max_queue_size=1 << 20)
        for i, (tag, step, value) in enumerate(points):
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
            writer.add_event(event_pb2.Event(wall_time=wall0 + i, step=step, summary=summary))
        writer.close()
    (path,) = set(folder.glob("events.out.tfevents.*")) - before
    return path


def sd_points(
    loss: Sequence[float],
    *,
    start: int = 1,
    lr: float = 1e-4,
    steps_per_epoch: int | None = None,
    validation: Callable[[int], float] | None = None,
    validate_every: int = 0,
    text_encoder: bool = False,
) -> list[tuple[str, int, float]]:
    """sd-scripts' scalar stream for `loss` at steps start, start+1, ... (train_network.py order).

    `validation(step)` is each validation pass's own mean; what is logged is sd-scripts' LossRecorder
    average (passes of the process's first epoch appended, later ones overwriting the first)."""
    points: list[tuple[str, int, float]] = []
    window: list[float] = []
    passes: list[float] = []
    first_epoch_start = start == 1 or (steps_per_epoch is not None and start <= steps_per_epoch)
    lr_tags = ["lr/textencoder", "lr/unet", "lr/group1"] if text_encoder else ["lr/unet", "lr/group0"]
    for i, value in enumerate(loss):
        step = start + i
        window = (window + [float(value)])[-(steps_per_epoch or len(loss)) :]
        points += [("loss/current", step, float(value)), ("loss/average", step, float(np.mean(window)))]
        points += [(tag, step, lr) for tag in lr_tags]
        if validation and validate_every and step % validate_every == 0:
            in_first = first_epoch_start and (steps_per_epoch is None or step <= steps_per_epoch)
            if in_first or not passes:
                passes.append(validation(step))
            else:
                passes[0] = validation(step)
            val = float(np.mean(passes))
            points += [
                ("loss/validation/step_average", step, val),
                ("loss/validation/step_divergence", step, val - float(np.mean(window))),
            ]
        if steps_per_epoch and step % steps_per_epoch == 0:
            points.append(("loss/epoch_average", step // steps_per_epoch, float(np.mean(window))))
            if validation:
                points.append(("loss/validation/epoch_average", step // steps_per_epoch, validation(step)))
    return points


# ---- run folders ---------------------------------------------------------------------------------


def make_run(
    root: Path,
    name: str = "sd15-standard",
    *,
    stamp: str = "20240101T120000Z-a1b2c3",
    loss: Sequence[float] | None = None,
    state: str = "succeeded",
    modifiers: Sequence[str] = (),
    glitches: Sequence[str] = (),
    values: dict | None = None,
    sample_steps: Sequence[int] = (),
    prompts: Sequence[str] = PROMPTS,
    output_name: str = "lora",
    **points_options,
) -> Path:
    """A run folder `root/<name>/<stamp>` with recipe.json, status.json, logs and samples."""
    run = root / name / stamp
    run.mkdir(parents=True)
    recipe = values or {
        "network": {"dim": 32, "alpha": 16.0, "module": "networks.lora"},
        "optimizer": {"type": "AdamW", "unet_lr": 1e-4, "text_encoder_lr": 5e-5},
        "training": {"max_train_steps": len(loss) if loss is not None else 0, "seed": 42},
    }
    baseline = name.split("+")[0]
    (run / "recipe.json").write_text(
        json.dumps(
            {
                "name": name,
                "baseline": baseline,
                "modifiers": list(modifiers),
                "glitches": list(glitches),
                "description": f"{name}: a test run",
                "family": "sd15",
                "recipe": recipe,
            }
        )
    )
    (run / "status.json").write_text(
        json.dumps(
            {
                "state": state,
                "started_at": "2024-01-01T12:00:00+00:00",
                "ended_at": None if state == "running" else "2024-01-01T12:30:00+00:00",
                "exit_code": None if state == "running" else (0 if state == "succeeded" else 1),
                "failure_class": None if state in ("succeeded", "running") else "trainer-crash",
            }
        )
    )
    (run / "sample_prompts.txt").write_text("\n".join(prompts) + "\n")
    if loss is not None:
        write_events(run / "logs" / "20240101120000" / "network_train", sd_points(loss, **points_options))
    write_samples(run / "output", output_name, sample_steps, prompt_count(prompts))
    return run


def prompt_count(prompts: Sequence[str]) -> int:
    return sum(1 for p in prompts if p.strip() and not p.startswith("#"))


def write_samples(output: Path, output_name: str, steps: Sequence[int | str], prompts: int) -> list[Path]:
    """Sample PNGs named as sd-scripts names them; an int is a step, a str like 'e000001' an epoch."""
    from PIL import Image, ImageDraw

    paths = []
    for k, step in enumerate(steps):
        when = step if isinstance(step, str) else f"{step:06d}"
        for p in range(prompts):
            path = output / "sample" / f"{output_name}_{when}_{p:02d}_20240101{120000 + k:06d}_{p + 1}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            img = Image.new("RGB", (64, 96), (40 * p % 256, 30 + 20 * k % 200, 120))
            ImageDraw.Draw(img).ellipse((8, 8 + 4 * k, 56, 56 + 4 * k), fill=(250, 220, 40 * k % 256))
            img.save(path)
            paths.append(path)
    return paths


def trainers(run_dirs: Sequence[Path]) -> list[int]:
    """Live processes whose command line names one of these runs' configs (accelerate and the trainer)."""
    import os

    configs = [str(Path(d) / "config.toml") for d in run_dirs]
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if any(c in cmdline for c in configs) and state != "Z":
            found.append(int(pid))
    return found
