"""Benchmark: a whole comparison of many runs against tbparse merely loading the same files.

Builds RUNS run folders of STEPS steps each in sd-scripts' layout (loss/current, loss/average,
lr/unet, lr/group0 every step, validation every 400 steps), then times on the same files:

* `tbparse.SummaryReader(<logs>).scalars` for every run (the baseline: loading only),
* `wrapper.reports.compare.write_comparison` (load with CRC checks, smooth, verdicts, plots, HTML and
  Markdown), in this process after a warm-up, and as `gaze compare` in a fresh process
  (interpreter start and imports included).

    python bench/compare_bench.py [--runs 20] [--steps 8000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TAGS = ("loss/current", "loss/average", "lr/unet", "lr/group0")


def write_run(root: Path, index: int, steps: int) -> Path:
    """One run folder with an sd-scripts-shaped event file; framing as tensorboard's RecordWriter."""
    import json
    import struct

    from tensorboard.compat.proto import event_pb2, summary_pb2

    from wrapper.curves.tfevents import masked_crc

    run = root / f"bench-{index:02d}" / f"20240101T120000Z-{index:06x}"
    folder = run / "logs" / "20240101120000" / "network_train"
    folder.mkdir(parents=True)
    (run / "recipe.json").write_text(json.dumps({"name": f"bench-{index:02d}", "recipe": {"lr": 1e-4 * (1 + index)}}))
    (run / "status.json").write_text(json.dumps({"state": "succeeded"}))
    rng = random.Random(index)
    records = []
    for step in range(1, steps + 1):
        loss = 0.1 + 0.05 * math.exp(-step / (500 + 100 * index)) + rng.gauss(0, 0.02)
        points = list(zip(TAGS, (loss, loss, 1e-4, 1e-4), strict=True))
        if step % 400 == 0:
            points.append(("loss/validation/step_average", 0.12 + 0.01 * math.sin(step / 1000 + index)))
        for tag, value in points:
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
            data = event_pb2.Event(wall_time=1.7e9 + step, step=step, summary=summary).SerializeToString()
            header = struct.pack("<Q", len(data))
            records.append(header + struct.pack("<I", masked_crc(header)) + data + struct.pack("<I", masked_crc(data)))
    (folder / f"events.out.tfevents.1704110400.bench.{index}.0").write_bytes(b"".join(records))
    return run


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from tbparse import SummaryReader

    from wrapper.reports.compare import write_comparison

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = [write_run(root, i, args.steps) for i in range(args.runs)]
        expected = args.runs * args.steps * len(TAGS) + args.runs * (args.steps // 400)

        rows = 0

        def baseline() -> None:
            nonlocal rows
            rows = sum(len(SummaryReader(str(run / "logs")).scalars) for run in runs)

        tbparse_ms = median_ms(baseline, args.repeat)
        assert rows == expected, (rows, expected)
        write_comparison(runs, root / "warm-up")
        ours_ms = median_ms(lambda: write_comparison(runs, root / "out", replace=True), args.repeat)
        command = [
            sys.executable,
            "-c",
            "from wrapper.cli import main; main()",
            "compare",
            *map(str, runs),
            "--out",
            str(root / "cli"),
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        cli_ms = (time.perf_counter() - start) * 1000
        html_kb = (root / "out" / "comparison.html").stat().st_size // 1024

    print(f"{args.runs} runs x {args.steps} steps, {expected} scalar points; median of {args.repeat};")
    print(f"Python {platform.python_version()}, {platform.machine()}; comparison.html {html_kb} KiB\n")
    print("| task | ms | vs tbparse loading |")
    print("|---|---:|---:|")
    print(f"| tbparse.SummaryReader: load every run (baseline) | {tbparse_ms:.0f} | 1.00x |")
    ratio = ours_ms / tbparse_ms
    print(f"| write_comparison: load, smooth, verdicts, plots, HTML (warm) | {ours_ms:.0f} | {ratio:.2f}x |")
    print(f"| `gaze compare` in a fresh process | {cli_ms:.0f} | {cli_ms / tbparse_ms:.2f}x |")


if __name__ == "__main__":
    main()
