"""Cost per image of a generation grid: one gen_img.py process per image vs one for the whole grid.

Baseline: one process per image, so the model loads for every image (its cost is that of a
one-image process, T1). Compared: one process for all N images of a checkpoint and sampler (what
`gaze generate` does; TN), with gen_img.py batch size 1 and with all N images in one batch.
Modes alternate and repeat; the fastest of each is kept, because other load on a shared machine
only ever adds time. Prints a Markdown table for bench/generate.md.

    python bench/generate_bench.py RUN_DIR --images 4 --steps 4 --size 128
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from wrapper.generation.generate import jobs, plan_generation, run_job
from wrapper.generation.grid import parse_grid
from wrapper.kohya.checkout import find_checkout


def timed(plan, job, checkout: Path, batch_size: int) -> float:
    """Wall seconds of one gen_img.py process for `job`, written into a scratch folder."""
    root = Path(tempfile.mkdtemp(prefix="gaze-bench-"))
    try:
        start = time.monotonic()
        record = run_job(plan, root, 1, job, checkout=checkout, batch_size=batch_size)
        if "error" in record:
            raise SystemExit(record["error"])
        return time.monotonic() - start
    finally:
        shutil.rmtree(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run with a final LoRA")
    parser.add_argument("--images", type=int, default=4, help="N: images in the grid (CFG 3, 4, 5, ...)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--sampler", default="euler")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    cfgs = ",".join(str(3 + i) for i in range(args.images))
    grid = parse_grid([f"sampler={args.sampler}", f"steps={args.steps}", f"cfg={cfgs}", "negative=on"])
    plan = plan_generation([args.run_dir], grid=grid, size=args.size, prompt_numbers=[1])
    checkout = find_checkout()
    (whole,) = jobs(plan.cells)
    source, sampler, cells = whole
    n = len(cells)
    modes = {
        "one process per image (baseline)": ((source, sampler, cells[:1]), 1),
        "one process per checkpoint x sampler, batch 1": (whole, 1),
        f"one process per checkpoint x sampler, batch {n}": (whole, n),
    }
    best = {name: float("inf") for name in modes}
    for _ in range(args.repeat):
        for name, (job, batch_size) in modes.items():
            best[name] = min(best[name], timed(plan, job, checkout, batch_size))
    one, whole_s = best["one process per image (baseline)"], best["one process per checkpoint x sampler, batch 1"]
    print(f"{source.family}, {args.size} px, {args.steps} steps, {sampler}, N={n} images, {plan.precision}, ")
    print(f"fastest of {args.repeat} alternating runs per mode\n")
    print("| mode | processes for N images | s per image | vs baseline |")
    print("|---|---|---|---|")
    for name, seconds in best.items():
        per_image = seconds if name.startswith("one process per image") else seconds / n
        processes = n if name.startswith("one process per image") else 1
        print(f"| {name} | {processes} | {per_image:.1f} | {one / per_image:.2f}x |")
    marginal = (whole_s - one) / (n - 1)
    print(f"\nper process: start-up and model loading {one - marginal:.1f} s; each image {marginal:.1f} s")


if __name__ == "__main__":
    main()
