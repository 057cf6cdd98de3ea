"""Cost per image of a generation grid: one gen_img.py process per image vs one for the whole grid.

Baseline: one process per image (the model is loaded for every image). Compared: one process for
all images of a checkpoint and sampler (what `gaze generate` does), with gen_img.py batch size 1
and with every image in one batch. Prints a Markdown table; results go in bench/generate.md.

    flock /tmp/gaze-heavy.lock python bench/generate_bench.py RUN_DIR --images 4 --steps 3 --size 128
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from wrapper.generate import jobs, plan_generation, run_job
from wrapper.grid import parse_grid
from wrapper.kohya.checkout import find_checkout


def measure(plan, groups, checkout: Path, batch_size: int = 1) -> float:
    """Wall seconds to run the given jobs one after another into a scratch folder."""
    root = Path(tempfile.mkdtemp(prefix="gaze-bench-"))
    try:
        start = time.monotonic()
        for number, job in enumerate(groups, start=1):
            run_job(plan, root, number, job, checkout=checkout, batch_size=batch_size)
        return time.monotonic() - start
    finally:
        shutil.rmtree(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run with a final LoRA")
    parser.add_argument("--images", type=int, default=4, help="images in the grid (CFG values 3, 4, 5, ...)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--sampler", default="euler")
    args = parser.parse_args()

    cfgs = ",".join(str(3 + i) for i in range(args.images))
    grid = parse_grid([f"sampler={args.sampler}", f"steps={args.steps}", f"cfg={cfgs}", "negative=on"])
    plan = plan_generation([args.run_dir], grid=grid, size=args.size, prompt_numbers=[1])
    checkout = find_checkout()
    (whole,) = jobs(plan.cells)
    source, sampler, cells = whole
    per_image = measure(plan, [(source, sampler, [c]) for c in cells], checkout)
    batched = measure(plan, [whole], checkout)
    one_batch = measure(plan, [whole], checkout, batch_size=len(cells))
    n = len(cells)
    family = plan.sources[0].family
    print(f"{family}, {args.size} px, {args.steps} steps, {sampler}, {n} images, precision {plan.precision}\n")
    print("| mode | processes | wall s | s per image | vs one process per image |")
    print("|---|---|---|---|---|")
    rows = [
        ("one process per image (baseline)", n, per_image),
        ("one process per checkpoint x sampler, batch 1", 1, batched),
        (f"one process per checkpoint x sampler, batch {n}", 1, one_batch),
    ]
    for name, processes, seconds in rows:
        print(f"| {name} | {processes} | {seconds:.1f} | {seconds / n:.1f} | {per_image / seconds:.2f}x faster |")
    load = (per_image - batched) / (n - 1) if n > 1 else float("nan")
    print(f"\nstart-up and model loading per process, estimated: {load:.1f} s")


if __name__ == "__main__":
    main()
