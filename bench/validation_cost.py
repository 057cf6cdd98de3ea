"""What the validation modifier costs: seconds per validation pass against seconds per training step.

    python bench/validation_cost.py --recipe sd15-smoke --steps 12 --split 0.25

One real run of RECIPE+steps=STEPS+validation=SPLIT:1 (a validation pass after every step) through
gaze's own path (prepare_run + launch) on the demo's random-weight model and synthetic photos. From the
TensorBoard timestamps: a training step is the time from the previous step's validation average to this
step's training scalars; a validation pass the time from a step's training scalars to its validation
average (4 forward passes per held-out image, no backward). Medians over the steps after the first 2.
Needs the train extra and an sd-scripts checkout.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from recipes import builtin_registry
from wrapper.demo.assets import ensure_demo_assets
from wrapper.kohya.checkout import find_checkout
from wrapper.kohya.logs import LOSS_CURRENT, VAL_STEP
from wrapper.kohya.validation import TIMESTEPS_PER_IMAGE, split_counts
from wrapper.runs.layout import read_run_scalars
from wrapper.runs.train import RunRequest, launch, prepare_run


def walls(frame, tag: str) -> dict[int, float]:
    rows = frame[frame["tag"] == tag]
    return dict(zip(rows["step"].astype(int), rows["wall_time"], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="sd15-smoke")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--split", default="0.25")
    parser.add_argument("--out", type=Path, default=Path("bench-out/validation"))
    args = parser.parse_args()
    checkout = find_checkout(None)
    family = builtin_registry().resolve(args.recipe).family
    assets = ensure_demo_assets(Path(".cache/demo"), family, log=print)
    recipe = builtin_registry().resolve(f"{args.recipe}+steps={args.steps}+validation={args.split}:1")
    request = RunRequest(dataset=assets.dataset_dir, model=assets.model_path, runs_dir=args.out,
                         cache_dir=Path(".cache/demo"), checkout=checkout,
                         tokenizer_cache_dir=assets.tokenizer_cache_dir)
    begin = time.monotonic()
    run_dir, argv, effective = prepare_run(recipe, request, print)
    outcome = launch(run_dir, argv, checkout, lambda _line: None, launches=1)
    wall = time.monotonic() - begin
    frame = read_run_scalars(run_dir)
    trained, validated = walls(frame, LOSS_CURRENT), walls(frame, VAL_STEP)
    steps = [s for s in sorted(trained) if s > 2 and s - 1 in validated and s in validated]
    step_s = statistics.median(trained[s] - validated[s - 1] for s in steps)
    pass_s = statistics.median(validated[s] - trained[s] for s in steps)
    images = len(list(assets.dataset_dir.glob("*.png")))
    held = split_counts(images, effective.data.validation_split)[1]
    print(f"\n{outcome.status.state}: {run_dir} ({wall:.0f} s)")
    print(f"| {effective.name} | {images} images, {held} held out | {step_s:.2f} s/step | {pass_s:.2f} s/pass "
          f"({TIMESTEPS_PER_IMAGE * held} forward passes) | {pass_s / step_s:.2f} steps per pass |")


if __name__ == "__main__":
    main()
