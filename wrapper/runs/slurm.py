"""A sweep as one Slurm job array, submitted through submitit (the optional `slurm` extra).

Each array task runs gaze's own single-run path on its node for its run folder, made beforehand
(wrapper.runs.slurm_task). States come from the run folders and from squeue / scontrol, never from
submitit's sacct polling: without Slurm's accounting database a cancelled job would never look done.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wrapper.errors import GazeError, RunError
from wrapper.launch import run_captured
from wrapper.runs import layout as runs
from wrapper.runs.pool import PoolItem
from wrapper.runs.train import Log, absolute, failure_class_of, prepare_inputs
from wrapper.settings import SlurmSettings

INSTALL = "pip install -e '.[slurm]'"
FINAL_SLURM_STATES = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                      "DEADLINE", "PREEMPTED")


def require_submitit() -> Any:
    """The submitit module, or one clear error saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise RunError(f"--on slurm needs submitit, which is not installed: {INSTALL}") from None
    return submitit


def submitit_parameters(resources: SlurmSettings, *, name: str, parallel: int) -> dict[str, Any]:
    """AutoExecutor parameters of one run per array task, at most `parallel` at once."""
    params: dict[str, Any] = {
        "name": name,
        "timeout_min": resources.time_min,
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": resources.cpus_per_run,
        "mem_gb": resources.mem_gb,
        "slurm_array_parallelism": parallel,
    }
    if resources.gpus_per_run:
        params["gpus_per_node"] = resources.gpus_per_run
    for key in ("partition", "account", "qos"):
        if getattr(resources, key):
            params[f"slurm_{key}"] = getattr(resources, key)
    if resources.setup:
        params["slurm_setup"] = list(resources.setup)
    return params


def task_request(item: PoolItem, resources: SlurmSettings) -> PoolItem:
    """The item as its array task runs it: the allocation's GPUs as processes, its CPUs as threads."""
    request = item.request
    request = dataclasses.replace(request, gpus=max(1, resources.gpus_per_run),
                                  threads=request.threads or resources.cpus_per_run)
    return dataclasses.replace(item, request=request)


def submit_array(folder: Path, items: Sequence[PoolItem], resources: SlurmSettings, *, name: str,
                 parallel: int) -> list[str]:
    """Submit one array task per item; returns the task ids ("<array>_<index>", in item order)."""
    submitit = require_submitit()
    from wrapper.runs.slurm_task import SweepTask

    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as exc:
        raise RunError(f"no Slurm here ({exc}); on one machine, `scripts/slurm-cluster start` makes one") from None
    executor.update_parameters(**submitit_parameters(resources, name=name, parallel=parallel))
    items = [task_request(item, resources) for item in items]
    try:
        jobs = executor.map_array(SweepTask(), [str(i.run_dir) for i in items], [i.recipe for i in items],
                                  [i.request for i in items])
    except Exception as exc:  # sbatch refused (partition, limits): submitit raises its own kinds
        raise RunError(f"Slurm refused the job array: {str(exc).strip().splitlines()[-1]}") from None
    return [job.job_id for job in jobs]


def check_before_submitting(items: Sequence[PoolItem], log: Log) -> list[PoolItem]:
    """Check each member's model, prepare and audit its images (into the shared cache the nodes reuse)
    before anything is queued; a member that fails is marked "failed" with the reason and left out."""
    good = []
    for item in items:
        try:
            prepare_inputs(item.recipe, absolute(item.request), lambda m, spec=item.spec: log(f"{spec}: {m}"))
        except GazeError as exc:
            log(f"{item.spec}: error: {exc}")
            runs.write_status(item.run_dir, runs.Status("failed", ended_at=runs.utc_now(), message=str(exc),
                                                        failure_class=failure_class_of(exc)))
            continue
        good.append(item)
    return good


def array_of(task_id: str) -> str:
    return task_id.split("_", 1)[0]


def task_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str, str]] | None:
    """squeue's view of jobs (arrays expanded): task id -> (state, node, reason); None without squeue.

    A job squeue no longer lists has ended (scontrol forgets it a few minutes later)."""
    if not job_ids:
        return {}
    ids = sorted({array_of(j) for j in job_ids})
    try:
        done = run_captured(["squeue", "--noheader", "--array", "--jobs", ",".join(ids), "--format", "%i|%T|%N|%r"],
                            timeout=60)
    except OSError:
        return None
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:  # every one of them has ended and been forgotten
            return {}
        return None
    states = {}
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            states[parts[0]] = (parts[1], parts[2], parts[3])
    return states


def scancel(job_ids: Sequence[str]) -> None:
    """Cancel Slurm jobs or array tasks; a job that already ended is not an error."""
    if not job_ids:
        return
    try:
        done = run_captured(["scancel", *job_ids], timeout=60)
    except OSError as exc:
        raise RunError(f"cannot run scancel ({exc.strerror or exc}): is this a Slurm login node?") from None
    if done.returncode != 0 and "Invalid job id" not in done.stderr:
        raise RunError(f"scancel {' '.join(job_ids)} failed: {done.stderr.strip()}")
