"""Measure a generation grid (or a run's training samples): metrics per image, per grid cell, per
checkpoint and per run, written as metrics.json and metrics.csv, and into the grid's index.json.

Images are decoded once, on every core, and every weight-free metric is computed from that one
decode; the weight-based ones (wrapper.generation.learned) run afterwards in this process.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wrapper.errors import RunError
from wrapper.files import write_atomic, write_json
from wrapper.generation import metrics as m
from wrapper.runs import layout as runs

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MAX_SIDE = 1024  # larger images are measured at this longest side (the trainer's sizes)
#: What makes two images the same grid cell (everything but the seed), and what groups cells.
CELL_KEYS = ("source", "prompt_id", "sampler", "steps", "cfg", "negative", "weight", "base")
CHECKPOINT_KEYS = ("source",)


@dataclass(frozen=True)
class Item:
    """One image to measure, with the grid coordinates that group it."""

    path: Path
    labels: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""


def generation_items(generation_dir: Path) -> list[Item]:
    """Every image of a `gaze generate` folder, as its index.json lists them."""
    index = runs.read_optional(Path(generation_dir) / runs.GENERATION_INDEX)
    images = index.get("images")
    if not isinstance(images, list):
        raise RunError(f"{generation_dir}: not a generation folder (no {runs.GENERATION_INDEX} with images)")
    items = []
    for entry in images:
        labels = {k: entry.get(k) for k in (*CELL_KEYS, "seed", "checkpoint", "step") if k in entry}
        items.append(Item(Path(generation_dir) / entry["file"], labels, entry.get("prompt", "")))
    return items


def sample_items(run_dir: Path) -> list[Item]:
    """The trainer's own sample images of a run: one cell per prompt and sample point."""
    from wrapper.kohya import samples
    from wrapper.kohya.configs import PROMPTS_FILE

    prompts = samples.read_sample_prompts(Path(run_dir) / PROMPTS_FILE)
    found = samples.latest_per_cell(samples.find_samples(runs.output_dir(run_dir))).values()
    return [
        Item(s.path, {"source": s.label, "prompt_id": f"P{s.prompt:02d}", "seed": s.seed},
             prompts[s.prompt] if s.prompt < len(prompts) else "")
        for s in found
    ]


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(RGB float32 in [0, 1] at most MAX_SIDE px, grey COMPARE_SIDE x COMPARE_SIDE of its centre square)."""
    import numpy as np
    from PIL import Image

    from wrapper.dataset.images import to_rgb

    with Image.open(path) as img:
        img.draft("RGB", (MAX_SIDE, MAX_SIDE))
        img.load()
        rgb = to_rgb(img)
    if max(rgb.size) > MAX_SIDE:
        rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    side = min(rgb.size)
    left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
    small = rgb.crop((left, top, left + side, top + side)).convert("L")
    small = small.resize((m.COMPARE_SIDE, m.COMPARE_SIDE), Image.Resampling.BOX)
    return np.asarray(rgb, np.float32) / 255, np.asarray(small, np.float32) / 255


def measure_one(path: Path) -> tuple[dict[str, float], np.ndarray] | str:
    """Every weight-free per-image metric and the grey thumbnail, or why the image cannot be read."""
    try:
        rgb, grey = load(path)
    except (OSError, ValueError, SyntaxError) as exc:
        return f"{path}: cannot read it ({exc})"
    return {name: float(fn(rgb)) for name, fn in m.PER_IMAGE.items()}, grey


def _pool_map(fn: Callable, paths: Sequence[Path], workers: int | None) -> list:
    from wrapper.dataset.scan import cpu_count

    workers = workers or cpu_count()
    if workers <= 1 or len(paths) < 4:
        return [fn(p) for p in paths]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(fn, paths, chunksize=max(1, len(paths) // (workers * 4))))


def reference_greys(dataset: Path | None, workers: int | None = None) -> list[np.ndarray]:
    """The training images as grey thumbnails (for memorisation), [] without a dataset."""
    if dataset is None:
        return []
    from wrapper.dataset.scan import scan

    folder = scan(Path(dataset))
    loaded = _pool_map(load, [folder.root / item.image for item in folder.items], workers)
    return [grey for _, grey in loaded]


@dataclass
class Measured:
    """Per-image rows, the problems met, and the metrics that were skipped with their reasons."""

    frame: pd.DataFrame
    problems: list[str]
    skipped: dict[str, str]


def measure(items: Sequence[Item], *, references: Sequence[np.ndarray] = (), workers: int | None = None,
            learned: Callable[..., dict[str, str]] | None = None, against: Path | None = None) -> Measured:
    """Every metric of every image; grid-cell metrics (seed similarity) are given to each image of the cell."""
    import pandas as pd

    results = _pool_map(measure_one, [item.path for item in items], workers)
    rows, greys, problems = [], {}, []
    for i, (item, result) in enumerate(zip(items, results, strict=True)):
        if isinstance(result, str):
            problems.append(result)
            continue
        values, grey = result
        greys[i] = grey
        rows.append({"index": i, "file": str(item.path), **item.labels, **values})
    frame = pd.DataFrame(rows)
    skipped = {}
    if references:
        frame["train_similarity"] = [m.nearest_ssim(greys[i], list(references)) for i in frame["index"]]
    else:
        skipped["train_similarity"] = "no training images (pass --against DATASET)"
    cells = [k for k in CELL_KEYS if k in frame.columns]
    if cells and len(frame):
        similarity = {}
        for _, group in frame.groupby(cells, dropna=False, sort=False):
            value = m.mean_pairwise_ssim([greys[i] for i in group["index"]])
            similarity.update(dict.fromkeys(group["index"], value))
        frame["seed_similarity"] = [similarity[i] for i in frame["index"]]
        if frame["seed_similarity"].isna().all():
            skipped["seed_similarity"] = "one seed per grid cell: nothing to compare"
    if learned is not None:
        skipped.update(learned(items, frame, against))
    return Measured(frame.drop(columns="index") if len(frame) else frame, problems, skipped)


def summary(frame: pd.DataFrame, by: Sequence[str]) -> list[dict[str, Any]]:
    """Mean, standard deviation and count of every metric per group (or for all rows when `by` is empty)."""
    names = [n for n in m.BY_NAME if n in frame.columns]
    if not len(frame) or not names:
        return []
    groups = [((), frame)] if not by else frame.groupby(list(by), dropna=False, sort=True)
    out = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = {k: _plain(v) for k, v in zip(by, key, strict=True)}
        for name in names:
            values = group[name].dropna()
            row[name] = {"mean": _plain(values.mean()), "std": _plain(values.std(ddof=1)), "n": int(len(values))}
        out.append(row)
    return out


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def write(folder: Path, measured: Measured, *, what: str, against: Path | None) -> list[Path]:
    """metrics.json (descriptions, per image, per cell, per checkpoint, overall) and metrics.csv."""
    frame = measured.frame
    cells = [k for k in CELL_KEYS if k in frame.columns]
    document = {
        "what": what,
        "measured": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "against": str(against) if against else None,
        "metrics": {metric.name: {"measures": metric.measures, "larger_means": metric.direction,
                                  "reveals": metric.reveals} for metric in m.METRICS if metric.name in frame.columns},
        "skipped": measured.skipped,
        "problems": measured.problems,
        "overall": (summary(frame, ()) or [{}])[0],
        "per_checkpoint": summary(frame, [k for k in CHECKPOINT_KEYS if k in frame.columns]),
        "per_cell": summary(frame, cells) if cells else [],
        "images": [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")],
    }
    write_json(folder / runs.METRICS_JSON, document)
    write_atomic(folder / runs.METRICS_CSV, frame.to_csv(index=False))
    return [folder / runs.METRICS_JSON, folder / runs.METRICS_CSV]


def attach_to_index(generation_dir: Path, frame: pd.DataFrame) -> None:
    """Put each image's metrics into its index.json entry (under "metrics")."""
    path = Path(generation_dir) / runs.GENERATION_INDEX
    index = runs.read_optional(path)
    names = [n for n in m.BY_NAME if n in frame.columns]
    by_file = {Path(row["file"]).name: {n: _plain(row[n]) for n in names} for row in frame.to_dict("records")}
    for entry in index.get("images", []):
        if Path(entry["file"]).name in by_file:
            entry["metrics"] = by_file[Path(entry["file"]).name]
    write_json(path, index)


def training_images_of(run_dir: Path) -> Path | None:
    """The prepared images a run trained on (run.json), when they are still there."""
    try:
        folder = Path(runs.read_run_info(run_dir).image_dir)
    except RunError:
        return None
    return folder if str(folder) and folder.is_dir() else None


def targets(path: Path) -> list[tuple[Path, str, list[Item], Path | None]]:
    """(folder to write into, what it holds, its images, its run's training images) for a run folder
    (its trainer samples and every generation) or one generation folder."""
    path = Path(path)
    if (path / runs.GENERATION_INDEX).is_file():
        index = runs.read_optional(path / runs.GENERATION_INDEX)
        sources = index.get("sources") or [{}]
        run_dir = Path(sources[0].get("run", "")) if sources[0].get("run") else None
        return [(path, "generation grid", generation_items(path), training_images_of(run_dir) if run_dir else None)]
    run_dir = runs.resolve_run_dir(path)
    against = training_images_of(run_dir)
    found = [(run_dir, "training samples", sample_items(run_dir), against)]
    found += [(index.parent, "generation grid", generation_items(index.parent), against)
              for index in runs.generation_indexes(run_dir)]
    return found


def measure_folder(folder: Path, what: str, items: Sequence[Item], *, against: Path | None,
                   workers: int | None = None, learned: Callable | None = None) -> tuple[Measured, list[Path]]:
    """Measure one folder's images and write its metrics (and, for a grid, its index.json)."""
    if not items:
        raise RunError(f"{folder}: no images to measure ({what})")
    measured = measure(items, references=reference_greys(against, workers), workers=workers, learned=learned,
                       against=against)
    written = write(folder, measured, what=what, against=against)
    if what == "generation grid":
        from wrapper.generation.sheets import write_page

        attach_to_index(folder, measured.frame)
        if (folder / runs.GENERATION_PAGE).is_file():  # the page gaze wrote: show the numbers there too
            try:
                write_page(folder, runs.read_optional(folder / runs.GENERATION_INDEX))
            except (KeyError, TypeError, AttributeError) as exc:
                measured.problems.append(f"{folder / runs.GENERATION_PAGE} not rewritten: its index lacks {exc}")
            else:
                written.append(folder / runs.GENERATION_PAGE)
    return measured, written
