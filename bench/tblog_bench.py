"""Benchmark: load every scalar of an sd-scripts-shaped event file, against tbparse.

Writes one event file of STEPS steps x 4 tags (loss/current, loss/average, lr/unet, lr/group0,
one simple_value per event, as sd-scripts' TensorBoard tracker writes them) with tensorboard's
own writer, then times, on the same file:

* `tbparse.SummaryReader(...).scalars` (the baseline),
* TensorBoard's `EventAccumulator` with no size guidance limit (all points kept),
* `wrapper.runs.layout.read_run_scalars` (every record's CRC32C checked, every row kept).

Each reader's row count is checked against the number of points written.

    python bench/tblog_bench.py [--steps 8000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TAGS = ("loss/current", "loss/average", "lr/unet", "lr/group0")


def write_run(root: Path, steps: int, seed: int = 0) -> int:
    """Write one sd-scripts-shaped run's log; return the number of scalar points."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    rng = random.Random(seed)
    writer = EventFileWriter(str(root / "logs" / "20240101120000" / "network_train"), max_queue_size=1 << 20)
    for step in range(1, steps + 1):
        loss = 0.1 + 0.05 * math.exp(-step / 2000) + rng.gauss(0, 0.02)
        for tag, value in zip(TAGS, (loss, loss, 1e-4, 1e-4), strict=True):
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
            writer.add_event(event_pb2.Event(wall_time=1.7e9 + step, step=step, summary=summary))
    writer.close()
    return steps * len(TAGS)


def timed(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Median wall time in ms of `repeat` calls, and the row count the last call returned."""
    times, rows = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from tbparse import SummaryReader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from wrapper.kohya.logs import find_event_files
    from wrapper.runs.layout import read_run_scalars

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        points = write_run(root, args.steps)
        (event_file,) = find_event_files(root / "logs")
        size = event_file.stat().st_size

        def accumulator() -> int:
            acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
            acc.Reload()
            return sum(len(acc.Scalars(t)) for t in acc.Tags()["scalars"])

        candidates = {
            "tbparse.SummaryReader (baseline)": lambda: len(SummaryReader(str(event_file)).scalars),
            "EventAccumulator, size_guidance 0": accumulator,
            "wrapper.runs.layout.read_run_scalars (CRC checked)": lambda: len(read_run_scalars(root)),
        }
        results = {name: timed(fn, args.repeat) for name, fn in candidates.items()}

    base = results["tbparse.SummaryReader (baseline)"][0]
    print(f"{args.steps} steps x {len(TAGS)} tags = {points} points, {size} bytes;")
    print(f"median of {args.repeat}, Python {platform.python_version()}, {platform.machine()}\n")
    print("| reader | ms | speed-up vs tbparse | rows |")
    print("|---|---:|---:|---:|")
    for name, (ms, rows) in results.items():
        flag = "" if rows == points else f" (expected {points})"
        print(f"| {name} | {ms:.1f} | {base / ms:.1f}x | {rows}{flag} |")


if __name__ == "__main__":
    main()
