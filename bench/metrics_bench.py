"""Benchmark the weight-free image metrics on a generation grid against a plain per-image loop.

Synthesises a grid of `--images` PNGs at `--size` px (25 grid cells of 4 seeds at 100 images) and
24 training images, then times:

  loop   for each image and each metric, open the image with Pillow and compute that metric in
         float64 numpy (SSIM: scikit-image on freshly downscaled copies), one process: the same
         computations, written the plain way
  ours   wrapper.generation.measure.measure: one decode per image, float32, every core

and checks that both give the same numbers.

    python bench/metrics_bench.py --images 100 --size 512
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from wrapper.dataset.scan import cpu_count
from wrapper.generation import measure
from wrapper.generation import metrics as m


def synth(folder: Path, n: int, size: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(n):
        a, b = rng.uniform(1, 8, 2)
        rgb = np.stack([np.sin(a * x + i), np.cos(b * y), x * y], -1) * 0.4 + 0.5
        rgb += rng.normal(0, 0.03, rgb.shape)
        path = folder / f"{i:03d}.png"
        Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def grey64(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    side = min(rgb.size)
    box = ((rgb.width - side) // 2, (rgb.height - side) // 2)
    crop = rgb.crop((*box, box[0] + side, box[1] + side)).convert("L").resize((64, 64), Image.Resampling.BOX)
    return np.asarray(crop, np.float64) / 255


def plain_loop(paths: list[Path], cells: list[list[int]], training: list[Path]) -> dict[str, list[float]]:
    """Every metric the plain way: one image at a time, one metric at a time, float64."""
    out: dict[str, list] = {name: [] for name in m.PER_IMAGE}
    for path in paths:
        for name, fn in m.PER_IMAGE.items():
            with Image.open(path) as img:
                rgb = np.asarray(img.convert("RGB"), np.float64) / 255
            out[name].append(float(fn(rgb)))
    out["train_similarity"] = [max(m.ssim(grey64(p), grey64(t)) for t in training) for p in paths]
    similarity = {}
    for cell in cells:
        value = np.mean([m.ssim(grey64(paths[i]), grey64(paths[j])) for i, j in combinations(cell, 2)])
        similarity.update(dict.fromkeys(cell, value))
    out["seed_similarity"] = [similarity[i] for i in range(len(paths))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        grid, train = Path(tmp) / "grid", Path(tmp) / "train"
        grid.mkdir(), train.mkdir()
        paths, training = synth(grid, args.images, args.size, 0), synth(train, 24, args.size, 1)
        cells = [list(range(i, min(i + 4, len(paths)))) for i in range(0, len(paths), 4)]
        items = [measure.Item(p, {"source": "final", "prompt_id": f"P{i // 4:02d}", "seed": i % 4})
                 for i, p in enumerate(paths)]
        timings: dict[str, float] = {}
        for _ in range(args.repeat):
            start = time.perf_counter()
            expected = plain_loop(paths, cells, training)
            timings["loop"] = min(timings.get("loop", 1e9), time.perf_counter() - start)
            start = time.perf_counter()
            got = measure.measure(items, references=measure.reference_greys(train), workers=None)
            timings["ours"] = min(timings.get("ours", 1e9), time.perf_counter() - start)
        for name, values in expected.items():
            assert np.allclose(got.frame[name].to_numpy(float), values, rtol=2e-3, atol=2e-3), name
    per = {k: v / args.images * 1000 for k, v in timings.items()}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores ({cpu_count()} usable), "
          f"{args.images} images at {args.size} px, best of {args.repeat}")
    print("| method | ms per image | vs loop |\n|---|---|---|")
    for name in ("loop", "ours"):
        print(f"| {name} | {per[name]:.1f} | {timings['loop'] / timings[name]:.2f}x |")


if __name__ == "__main__":
    main()
