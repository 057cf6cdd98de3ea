"""Finished runs into an MLflow tracking store: what the run folder already holds, in MLflow's terms.

Parameters: the resolved recipe flattened, its glitches, tweaks, seed and model family (the HParams
session's values, wrapper.runs.trackers). Metrics: every scalar of the run's TensorBoard logs at its
step and wall time, and the curve metrics as `gaze/<name>`. Tags: the verdicts (`verdict.<Metric>`),
with the full table as verdicts.csv. Artifacts: the report (report.html, report.md, plots/ with the
sample grid), the generation contact sheets, the run's records and configs, and the LoRA files only
when asked.

The default store is `sqlite:///<runs>/mlflow.db` with artifacts in `<runs>/mlflow-artifacts/`. An
export is idempotent: a run is found again by its `gaze.run` tag (`<recipe>/<run folder>`) in its
experiment and only what the store lacks is added, so exporting twice changes nothing and exporting a
resumed run adds its new points.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from wrapper.errors import GazeError, RunError
from wrapper.kohya import configs
from wrapper.reports.run import REPORT, REPORT_HTML
from wrapper.runs import layout as runs

RUN_TAG = "gaze.run"
STORE, ARTIFACTS = "mlflow.db", "mlflow-artifacts"
#: gaze's ended states and MLflow's run statuses; queued, running and lost runs are not exported.
ENDED = {"succeeded": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
MAX_PARAM = 6000  # MLflow's longest parameter value
BATCH = 1000  # MLflow's most metrics in one log_batch call
RECORDS = (runs.RECIPE, runs.RUN, runs.STATUS, runs.ENVIRONMENT, configs.ARGUMENTS_FILE, configs.DATASET_FILE,
           configs.PROMPTS_FILE)
REPORT_FILES = (REPORT_HTML, f"{REPORT}.md")
Log = Callable[[str], None]


@dataclass(frozen=True)
class Exported:
    """What became of one run: "created", "updated", "unchanged" or "skipped" (with why)."""

    run_dir: Path
    action: str
    message: str
    run_id: str | None = None
    points: int = 0  # metric points added


def require_mlflow() -> None:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise GazeError("gaze export mlflow needs MLflow: install the mlflow extra with `make setup-trackers` "
                        "(pip install -e '.[mlflow]')") from None


def default_store(runs_dir: Path) -> str:
    """The local store: a SQLite file inside the runs folder (artifacts go beside it)."""
    return f"sqlite:///{(Path(runs_dir) / STORE).resolve()}"


def run_key(run_dir: Path) -> str:
    """The run's id in the store: its recipe folder and run folder, unique under a runs folder."""
    return f"{run_dir.parent.name}/{run_dir.name}"


def export_runs(run_dirs: Sequence[Path], *, runs_dir: Path, tracking_uri: str | None = None,
                experiment: str | None = None, with_lora: bool = False, log: Log = print) -> list[Exported]:
    """Export each run (see the module's docstring); one Exported per run, in order."""
    require_mlflow()
    from mlflow import MlflowClient

    if tracking_uri is None:
        Path(runs_dir).mkdir(parents=True, exist_ok=True)  # SQLite makes the file, not its folder
    client = MlflowClient(tracking_uri=tracking_uri or default_store(runs_dir))
    artifact_root = None if tracking_uri else (Path(runs_dir) / ARTIFACTS).resolve()
    done = []
    for run_dir in run_dirs:
        result = export_run(client, Path(run_dir), experiment=experiment, artifact_root=artifact_root,
                            with_lora=with_lora)
        log(f"{result.action}: {result.message}")
        done.append(result)
    return done


def export_run(client: Any, run_dir: Path, *, experiment: str | None, artifact_root: Path | None,
               with_lora: bool) -> Exported:
    """One run into `client`'s store: created, or updated in place when its `gaze.run` tag is there."""
    from wrapper.curves.verdicts import verdicts

    key = run_key(run_dir)
    try:
        status = runs.read_status(run_dir)
    except RunError as exc:
        return Exported(run_dir, "skipped", f"{key}: {exc}")
    if status.state not in ENDED:
        return Exported(run_dir, "skipped", f"{key} is {status.state}: only runs that ended are exported "
                        "(wait for it, or `gaze resume` it)")
    record = runs.read_recipe_record(run_dir)
    experiment_id = _experiment(client, experiment or record.baseline or runs.recipe_name(run_dir), artifact_root)
    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{_quoted(key)}'",
                               max_results=2)
    if found:
        run = found[0]
        action = "updated"
    else:
        run = client.create_run(experiment_id, start_time=_ms(status.started_at), run_name=key,
                                tags={RUN_TAG: key})
        action = "created"
    run_id = run.info.run_id
    notes = _log_params(client, run_id, _params(run_dir), dict(run.data.params))
    scalars = runs.read_run_scalars(run_dir)
    points = _log_metrics(client, run_id, _points(scalars, status), bool(found))
    judged = verdicts(scalars)
    for name, value in _tags(run_dir, status, judged, record).items():
        client.set_tag(run_id, name, value)
    missing = _log_artifacts(client, run_id, run_dir, judged, with_lora)
    client.set_terminated(run_id, status=ENDED[status.state], end_time=_ms(status.ended_at))
    if action == "updated" and not points:
        action = "unchanged"
    what = f"{key} -> MLflow run {run_id} ({points} new metric point{'s' * (points != 1)})"
    return Exported(run_dir, action, "; ".join([what, *notes, *missing]), run_id, points)


def _quoted(text: str) -> str:
    if "'" in text:
        raise RunError(f"run folder {text!r}: a quote in its name cannot be looked up in MLflow; rename it")
    return text


def _experiment(client: Any, name: str, artifact_root: Path | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise RunError(f"MLflow experiment {name!r} is deleted; restore it or pass --experiment NAME")
        return found.experiment_id
    location = None
    if artifact_root is not None:  # a local store: artifacts beside it, not in ./mlruns of wherever gaze runs
        location = (artifact_root / re.sub(r"[^\w.+=-]+", "_", name)).as_uri()
    return client.create_experiment(name, artifact_location=location)


def _ms(stamp: str | None) -> int | None:
    return int(datetime.fromisoformat(stamp).timestamp() * 1000) if stamp else None


def _params(run_dir: Path) -> dict[str, str]:
    from wrapper.runs.trackers import hyperparameters

    values: dict[str, Any] = hyperparameters(run_dir)
    record = runs.read_recipe_record(run_dir)
    values["family"] = record.family or runs.read_optional(run_dir / runs.RUN).get("family", "")
    text = {k: str(v) for k, v in values.items()}
    return {k: v if len(v) <= MAX_PARAM else v[: MAX_PARAM - 3] + "..." for k, v in text.items()}


def _log_params(client: Any, run_id: str, params: dict[str, str], logged: dict[str, str]) -> list[str]:
    """Log the parameters the store lacks (MLflow never changes a logged one); a note for each that differs."""
    from mlflow.entities import Param

    new = [Param(k, v) for k, v in params.items() if k not in logged]
    for i in range(0, len(new), 100):  # MLflow's most parameters in one batch
        client.log_batch(run_id, params=new[i:i + 100])
    return [f"parameter {k} is {logged[k]!r} in the store but {v!r} here; left as it was"
            for k, v in params.items() if k in logged and logged[k] != v]


def metric_key(tag: str) -> str:
    """A TensorBoard tag as an MLflow metric name (letters, digits, _ - . space / : only)."""
    return re.sub(r"[^\w\-. /:]", "_", tag)


def _points(scalars: Any, status: runs.Status) -> list[tuple[str, int, int, float]]:
    """(metric, step, timestamp in ms, value) of every scalar, then the curve metrics at step 0."""
    from wrapper.curves.stats import curve_metrics
    from wrapper.runs.trackers import METRIC_PREFIX

    points = [(metric_key(tag), int(step), int(wall * 1000), float(value)) for tag, step, wall, value in
              zip(scalars["tag"], scalars["step"], scalars["wall_time"], scalars["value"], strict=True)]
    when = _ms(status.ended_at) or 0
    points += [(METRIC_PREFIX + name, 0, when, float(value))
               for name, value in curve_metrics(scalars).items() if value is not None]
    return points


def _same(value: float) -> tuple[bool, float]:
    return (True, 0.0) if math.isnan(value) else (False, value)  # NaN equals NaN here


def _log_metrics(client: Any, run_id: str, points: list[tuple[str, int, int, float]], existing: bool) -> int:
    """Log the points the store lacks; returns how many."""
    from mlflow.entities import Metric

    if existing:
        have = set()
        for key in {p[0] for p in points}:
            have |= {(key, m.step, m.timestamp, _same(m.value)) for m in client.get_metric_history(run_id, key)}
        points = [p for p in points if (p[0], p[1], p[2], _same(p[3])) not in have]
    points = list(dict.fromkeys((k, s, t, _same(v)) for k, s, t, v in points))
    metrics = [Metric(k, math.nan if nan else v, t, s) for k, s, t, (nan, v) in points]
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i:i + BATCH])
    return len(metrics)


def _tags(run_dir: Path, status: runs.Status, judged: list, record: runs.RecipeRecord) -> dict[str, str]:
    tags = {
        RUN_TAG: run_key(run_dir),
        "gaze.run_dir": str(run_dir.resolve()),
        "gaze.recipe": record.name or runs.recipe_name(run_dir),
        "gaze.baseline": record.baseline,
        "gaze.glitches": ", ".join(record.glitches) or "none",
        "gaze.state": status.state,
        "gaze.failure_class": status.failure_class or "",
        "mlflow.note.content": record.description,
    }
    tags |= {f"verdict.{v.metric}": v.status for v in judged}
    return {k: v[:MAX_PARAM] for k, v in tags.items() if v}


def _uploaded(client: Any, run_id: str, path: str) -> dict[str, int | None]:
    return {f.path: f.file_size for f in client.list_artifacts(run_id, path) if not f.is_dir}


def _log_artifacts(client: Any, run_id: str, run_dir: Path, judged: list, with_lora: bool) -> list[str]:
    """The report, sample and contact sheets, records and verdict table (replaced each time, they are small),
    and the LoRA files when asked (those already there at the same size are not sent again)."""
    from wrapper.curves.verdicts import verdict_frame

    for name in REPORT_FILES:
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name), "report")
    if (run_dir / runs.PLOTS).is_dir():
        client.log_artifacts(run_id, str(run_dir / runs.PLOTS), f"report/{runs.PLOTS}")
    for index in runs.generation_indexes(run_dir):
        folder = index.parent
        for name in (runs.GENERATION_PAGE, runs.GENERATION_INDEX):
            if (folder / name).is_file():
                client.log_artifact(run_id, str(folder / name), f"{runs.GENERATIONS}/{folder.name}")
        if (folder / "sheets").is_dir():
            client.log_artifacts(run_id, str(folder / "sheets"), f"{runs.GENERATIONS}/{folder.name}/sheets")
    for name in RECORDS:
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name), "run")
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "verdicts.csv"
        verdict_frame(judged).to_csv(table, index=False)
        client.log_artifact(run_id, str(table))
    if with_lora:
        output_name = runs.read_optional(run_dir / runs.RUN).get("output_name") or run_dir.parent.name
        there = _uploaded(client, run_id, "lora")
        for _step, path in runs.list_checkpoints(run_dir, output_name).values():
            if there.get(f"lora/{path.name}") != path.stat().st_size:
                client.log_artifact(run_id, str(path), "lora")
    notes = []
    if not (run_dir / REPORT_HTML).is_file():
        notes.append("no report yet: `gaze report` it and export again to add the report and sample grid")
    return notes
