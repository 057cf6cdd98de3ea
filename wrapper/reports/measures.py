"""The image metrics of `gaze metrics` (metrics.json) as report blocks: per checkpoint for one run,
and one table per metric across runs for a comparison. The numbers are shown with their spread and
what each measures; nothing here calls a difference a glitch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wrapper.errors import RunError
from wrapper.reports.pages import Para, Table
from wrapper.runs import layout as runs


def read_metrics(folder: Path, problems: list[str]) -> dict[str, Any] | None:
    """A folder's metrics.json, None when it has none; a problem (and None) when it cannot be read."""
    path = Path(folder) / runs.METRICS_JSON
    if not path.exists():
        return None
    try:
        document = runs.read_optional(path)
    except RunError as exc:
        problems.append(f"{exc}; its image metrics are left out")
        return None
    ok = isinstance(document.get("metrics"), dict) and isinstance(document.get("per_checkpoint"), list)
    if not ok:
        problems.append(f"{path}: not a gaze metrics file; left out")
        return None
    return document


def _cell(stat: Any) -> str:
    if not isinstance(stat, dict) or stat.get("mean") is None:
        return "-"
    spread = f" ± {stat['std']:.3g}" if isinstance(stat.get("std"), int | float) else ""
    return f"{stat['mean']:.4g}{spread} (n={stat.get('n', '?')})"


def metric_blocks(document: dict[str, Any], title: str) -> list:
    """One table: a row per metric, a column per checkpoint (mean ± standard deviation, count)."""
    described = document["metrics"]
    groups = [g for g in document["per_checkpoint"] if isinstance(g, dict)] or [document.get("overall") or {}]
    columns = [str(g.get("source", "all")) for g in groups]
    rows = [[name, info.get("larger_means", ""), *[_cell(g.get(name)) for g in groups]]
            for name, info in described.items() if isinstance(info, dict)]
    blocks: list = [Para(f"{title}: {document.get('what', '?')}, measured {document.get('measured', '?')}"
                         + (f" against {document['against']}" if document.get("against") else "") + ".")]
    blocks.append(Table(["Metric", "Larger means", *columns], rows))
    skipped = document.get("skipped") or {}
    if isinstance(skipped, dict) and skipped:
        blocks.append(Para("Not measured: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + "."))
    return blocks


def run_metric_blocks(run_dir: Path, problems: list[str]) -> list:
    """The run's trainer samples and each generation grid that `gaze metrics` measured."""
    blocks: list = []
    samples = read_metrics(run_dir, problems)
    if samples:
        blocks += metric_blocks(samples, "Trainer samples")
    for index in runs.generation_indexes(run_dir):
        grid = read_metrics(index.parent, problems)
        if grid:
            blocks += metric_blocks(grid, f"Generation {index.parent.name}")
    return blocks


def comparison_metric_blocks(labels: Sequence[str], run_dirs: Sequence[Path], problems: list[str]) -> list:
    """One table per metric: a row per run (its trainer samples and newest measured grid, overall)."""
    found: dict[str, dict[str, Any]] = {}
    for label, run_dir in zip(labels, run_dirs, strict=True):
        grids = [d for i in runs.generation_indexes(run_dir) if (d := read_metrics(i.parent, problems))]
        newest = grids[-1] if grids else None
        for kind, document in (("samples", read_metrics(run_dir, problems)), ("newest grid", newest)):
            if document:
                found[f"{label} ({kind})"] = document
    if not found:
        return [Para("No image metrics: run `gaze metrics RUN_DIR` for each run.")]
    names = dict.fromkeys(n for d in found.values() for n in d["metrics"])
    blocks: list = []
    for name in names:
        info = next(d["metrics"][name] for d in found.values() if name in d["metrics"])
        rows = [[row, _cell((d.get("overall") or {}).get(name))] for row, d in found.items() if name in d["metrics"]]
        blocks += [Para(f"{name}: {info.get('measures', '')} — larger means {info.get('larger_means', '?')}; "
                        f"meant to reveal {info.get('reveals', '?')}."), Table(["Run", name], rows)]
    return blocks
