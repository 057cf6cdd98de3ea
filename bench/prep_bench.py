"""Benchmark `gaze prep --op crop-orientation` against naive Pillow and against plain decoding.

Synthesises camera-size JPEGs (smooth colour fields, edges and sensor-like noise) in a temporary
folder, then measures per image:

  naive      Pillow open, EXIF transpose, RGB, crop, LANCZOS resize, PNG save (defaults), 1 process
             (and the same without the save, to show where its time goes)
  decode     Pillow open + full decode only, 1 process
  ours/1     wrapper.dataset.prep.prepare with one worker (hashing, manifest and captions included)
  ours/all   the same on every core (what `gaze prep` does)

and the PSNR of our output against the naive full-decode result (worst image).

    python bench/prep_bench.py --images 8
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageOps

from wrapper.dataset.images import Geometry, centre_crop
from wrapper.dataset.prep import Plan, prepare
from wrapper.dataset.scan import cpu_count

TARGETS = {"portrait": (832, 1216), "landscape": (1216, 832)}


def camera_jpeg(path: Path, size: tuple[int, int], seed: int) -> None:
    """A photo-like JPEG: large smooth colour fields, some hard edges, and noise, at quality 92."""
    rng = np.random.default_rng(seed)
    w, h = size
    coarse = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    detail = Image.fromarray(rng.integers(0, 256, (h // 40, w // 40, 3), dtype=np.uint8)).resize(size, Image.BILINEAR)
    img = Image.blend(coarse, detail, 0.25)
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(w // 30, w // 6))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    pixels = np.asarray(img, dtype=np.int16) + rng.normal(0, 5, (h, w, 3)).astype(np.int16)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=92)


def naive(path: Path, out: Path | None) -> Image.Image:
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    target = TARGETS["portrait"] if img.height > img.width else TARGETS["landscape"]
    img = img.crop(centre_crop(*img.size, target)).resize(target, Image.LANCZOS)
    if out:
        img.save(out / (path.stem + ".png"))
    return img


def timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def psnr(a: Image.Image, b: Image.Image) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", default="3000x4000", help="camera size, width x height")
    parser.add_argument("--formats", default="webp,bmp", help="output formats to time, comma-separated")
    parser.add_argument("--workers", default=f"1,{cpu_count()}", help="worker counts to time, comma-separated")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs (not for naive)")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    geometry = Geometry("crop-orientation", TARGETS["portrait"], TARGETS["landscape"])

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src, naive_out = root / "src", root / "naive"
        src.mkdir()
        naive_out.mkdir()
        for i in range(args.images):
            size = (w, h) if i % 4 else (h, w)  # one in four is landscape
            camera_jpeg(src / f"img{i:03d}.jpg", size, i)
            (src / f"img{i:03d}.txt").write_text("a photo", encoding="utf-8")
        paths = sorted(src.glob("*.jpg"))
        n = len(paths)
        reference = {}

        def run_naive() -> None:
            for p in paths:
                reference[p.stem] = naive(p, naive_out)

        def run_decode() -> None:
            for p in paths:
                Image.open(p).load()

        def run_ours(fmt: str, workers: int) -> Path:
            cache = root / f"cache-{fmt}-{workers}"
            shutil.rmtree(cache, ignore_errors=True)
            return prepare(src, Plan(geometry, format=fmt), cache, workers=workers).path

        seconds = {
            "naive Pillow, 1 process": timed(run_naive),
            "naive Pillow without the PNG save": timed(lambda: [naive(p, None) for p in paths]),
            "decode only, 1 process": timed(run_decode, args.repeats),
        }
        worst = float("inf")
        for fmt in args.formats.split(","):
            for workers in (int(v) for v in args.workers.split(",")):
                name = f"gaze prep --format {fmt}, {workers} worker{'s' if workers > 1 else ''}"
                seconds[name] = timed(lambda fmt=fmt, workers=workers: run_ours(fmt, workers), args.repeats)
            out = run_ours(fmt, cpu_count())
            for p in paths:
                worst = min(worst, psnr(Image.open(out / f"{p.stem}.{fmt}"), reference[p.stem]))
        mb = sum(p.stat().st_size for p in paths) / n / 1e6

    naive_s, decode_s = seconds["naive Pillow, 1 process"] / n, seconds["decode only, 1 process"] / n
    print(f"{n} JPEGs of {w}x{h} ({mb:.1f} MB each) -> 832x1216 / 1216x832")
    print(
        f"{os.cpu_count()} CPUs ({cpu_count()} usable), Python {platform.python_version()}, Pillow {PIL.__version__}\n"
    )
    print("| method | ms/image | images/s | speed-up vs naive | time vs decode |")
    print("|---|---:|---:|---:|---:|")
    for name, total in seconds.items():
        per = total / n
        print(f"| {name} | {per * 1000:.0f} | {1 / per:.1f} | {naive_s / per:.2f}x | {per / decode_s:.2f}x |")
    print(f"\nworst-image PSNR of gaze prep against the naive full-decode result: {worst:.1f} dB")


if __name__ == "__main__":
    main()
