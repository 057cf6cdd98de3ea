"""A run in the trackers people already use: its hyperparameters and final numbers as a TensorBoard
HParams session, so `tensorboard --logdir runs` shows every run of every recipe in one table.

The session is written into `<run>/hparams/` (sd-scripts' own logs stay alone in `logs/`): the
resolved recipe's scalar values, its glitches, tweaks and seed, and the curve metrics of
wrapper.curves.stats as `gaze/<metric>` scalars, which the HParams dashboard lists beside them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from wrapper.curves.stats import CURVE_METRICS, curve_metrics
from wrapper.recipe.diff import flatten_dict
from wrapper.runs import layout as runs

HPARAMS_DIR = "hparams"
METRIC_PREFIX = "gaze/"


def hyperparameters(run_dir: Path) -> dict[str, bool | int | float | str]:
    """The run's recipe as flat scalar values, with its glitches, tweaks and seed named plainly."""
    record = runs.read_recipe_record(run_dir)
    flat = flatten_dict(record.recipe or {})
    values: dict[str, bool | int | float | str] = {
        k: v for k, v in flat.items()
        if isinstance(v, bool | int | float | str) and not k.startswith("sampling.prompts")
    }
    values.update({
        "recipe": record.name or runs.recipe_name(run_dir),
        "baseline": record.baseline,
        "glitches": ", ".join(record.glitches) or "none",
        "tweaks": ", ".join(m for m in record.modifiers if m not in record.glitches) or "none",
        "seed": int(flat.get("training.seed", 0) or 0),
    })
    return values


def write_hparams(run_dir: Path) -> Path:
    """Write (or rewrite) the run's HParams session; returns its folder."""
    import shutil

    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    run_dir = Path(run_dir)
    folder = run_dir / HPARAMS_DIR
    shutil.rmtree(folder, ignore_errors=True)  # ours alone: one session per run, refreshed
    folder.mkdir()
    values = hyperparameters(run_dir)
    numbers = curve_metrics(runs.read_run_scalars(run_dir))
    status = runs.read_status(run_dir) if (run_dir / runs.STATUS).is_file() else None
    values["state"] = status.state if status else "unknown"
    now = time.time()
    writer = EventFileWriter(str(folder))
    config = hp.hparams_config_pb(
        hparams=[hp.HParam(name) for name in values],
        metrics=[hp.Metric(METRIC_PREFIX + name, description=text) for name, text in CURVE_METRICS.items()],
    )
    for summary in (config, hp.hparams_pb(values, trial_id=str(run_dir.name), start_time_secs=now)):
        writer.add_event(event_pb2.Event(wall_time=now, step=0, summary=summary))
    for name, value in numbers.items():
        if value is not None:
            scalar = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=METRIC_PREFIX + name,
                                                                          simple_value=float(value))])
            writer.add_event(event_pb2.Event(wall_time=now, step=0, summary=scalar))
    writer.close()
    return folder


def read_hparams(folder: Path) -> dict[str, Any]:
    """The hyperparameters of a session as TensorBoard's own loader reads them back (for checks)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    content = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)
    info = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    values = {}
    for name, value in info.hparams.items():
        kind = value.WhichOneof("kind")
        values[name] = getattr(value, kind)
    scalars = {tag: accumulator.Scalars(tag)[-1].value for tag in accumulator.Tags()["scalars"]}
    return {"hparams": values, "metrics": scalars}
