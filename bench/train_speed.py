"""s/step and peak GPU memory of a recipe against the same run with sd-scripts' speed defaults.

    python bench/train_speed.py --family sdxl --steps 40 --out bench-out

Both runs go through gaze's own launcher (prepare_run + launch) on random full-size weights and
synthetic photos at the recipe's real resolution. "recipe" is the built-in standard recipe;
"sd-scripts defaults" is the same recipe with every speed/memory flag at sd-scripts' default:
fp32 (mixed_precision no), plain attention (no sdpa/xformers), no latent or text-encoder caching,
no gradient checkpointing, 8 non-persistent data-loader workers. s/step is the median time between
consecutive loss/current points in the TensorBoard log (steps after the first 5); peak GPU memory
is sampled with NVML every 0.2 s (on a CPU: the summed RSS of the trainer's processes). Needs the
train extra and an sd-scripts checkout.

    python bench/train_speed.py --recipe sd15-smoke --steps 12      # a CPU-sized run
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from pathlib import Path

from recipes import builtin_registry
from wrapper.demo.assets import ensure_demo_assets
from wrapper.demo.photos import synth_dataset
from wrapper.kohya.checkout import find_checkout
from wrapper.kohya.logs import LOSS_CURRENT
from wrapper.recipe import evolve
from wrapper.runs.layout import read_run_scalars
from wrapper.runs.train import RunRequest, launch, prepare_run

DEFAULTS = {"mixed_precision": "no", "full_bf16": False, "attention": "none", "cache_latents": False,
            "cache_text_encoder_outputs": False, "gradient_checkpointing": False,
            "max_data_loader_n_workers": 8, "persistent_data_loader_workers": False}


class PeakRss:
    """Sample the summed resident memory of the processes whose command line names `marker`."""

    def __init__(self, marker: str) -> None:
        self.marker, self.peak, self.running = marker, 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _rss(self) -> int:
        total = 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if self.marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    status = Path(f"/proc/{pid}/status").read_text()
                    total += int(status.split("VmRSS:")[1].split()[0]) * 1024
            except (OSError, IndexError, ValueError):
                continue
        return total

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.5)

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return self.peak / 1024**3


class PeakGpuMemory:
    """Sample the GPU's used memory in a thread; .peak_gib after stop()."""

    def __init__(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        self.base = self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used
        self.peak, self.running = 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used - self.base)
            time.sleep(0.2)

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return self.peak / 1024**3


def seconds_per_step(run_dir: Path, skip: int = 5) -> float:
    frame = read_run_scalars(run_dir)
    points = frame[frame["tag"] == LOSS_CURRENT].sort_values("step")
    deltas = points["wall_time"].diff().iloc[skip + 1:]
    return statistics.median(deltas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["sd15", "sdxl"], default="sdxl")
    parser.add_argument("--recipe", help="recipe to measure (default: <family>-standard)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench"))
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()

    registry = builtin_registry()
    base = registry.resolve(args.recipe or f"{args.family}-standard")
    args.family = base.family
    recipe = evolve(base, training={"max_train_steps": args.steps, "save_every_n_steps": None, "save_state": False},
                    sampling={"every_n_steps": None}, optimizer={"warmup_steps": 0})
    assets = ensure_demo_assets(args.cache, args.family)
    dataset = synth_dataset(args.cache / f"photos-{args.family}", n=args.images,
                            sizes=(base.prep.portrait, base.prep.landscape))
    rows = []
    import torch

    gpu = torch.cuda.is_available()
    variants = (("recipe", recipe),
                ("recipe + gradient checkpointing", evolve(recipe, training={"gradient_checkpointing": True})),
                ("sd-scripts defaults", evolve(recipe, training=DEFAULTS)))
    for label, variant in variants:
        request = RunRequest(dataset=dataset, model=assets.model_path, runs_dir=args.out / "runs",
                             cache_dir=args.cache, checkout=find_checkout(),
                             tokenizer_cache_dir=assets.tokenizer_cache_dir)
        tag = "-".join(w for w in label.split() if w.isalpha())
        run_dir, argv, _ = prepare_run(variant.replace(name=f"{variant.name}-{tag}"), request, print)
        memory = PeakGpuMemory() if gpu else PeakRss(str(run_dir))
        outcome = launch(run_dir, argv, request.checkout, lambda _line: None, launches=1)
        peak = memory.stop()
        if outcome.status.state != "succeeded":
            print((run_dir / "train.log").read_text()[-4000:])
            raise SystemExit(f"{label}: {outcome.status}")
        rows.append((label, seconds_per_step(run_dir), peak, outcome.duration_s))
        print(f"{label}: {rows[-1][1]:.3f} s/step, peak {peak:.1f} GiB, wall {outcome.duration_s:.0f} s")
    base_speed = rows[-1][1]
    memory_kind = "peak GPU memory" if gpu else "peak RSS (trainer)"
    lines = [f"{base.name} on {'CUDA' if gpu else 'CPU'} at {base.data.resolution[0]}x{base.data.resolution[1]}, batch "
             f"{base.training.batch_size}, {args.steps} steps, {args.images} images", "",
             f"| run | s/step (median) | vs sd-scripts defaults | {memory_kind} | wall (incl. loading, caching) |",
             "|---|---|---|---|---|"]
    lines += [f"| {label} | {speed:.3f} | {speed / base_speed:.2f}x | {peak:.1f} GiB | {wall:.0f} s |"
              for label, speed, peak, wall in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"train_speed_{base.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
