"""One Slurm array task: train a sweep member's run folder on its node, and come back when requeued.

Imported only by `--on slurm` (it needs submitit) and, on the node, by submitit unpickling the task.
Pre-emption (or `scontrol requeue`) sends SIGTERM: the trainer's group is stopped, the run marked
"interrupted", and Slurm starts the task again, which continues the run from its newest saved state
(wrapper.runs.resume.continue_run). Near its time limit submitit's USR2 calls checkpoint(), which
marks the run "queued" and resubmits the same task; it then continues the same way.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

from submitit.helpers import Checkpointable, DelayedSubmission

from wrapper.errors import GazeError
from wrapper.recipe import Recipe
from wrapper.runs import layout as runs
from wrapper.runs.pool import free_port
from wrapper.runs.resume import continue_run
from wrapper.runs.train import RunRequest


def slurm_task_id() -> str:
    """This task's id as squeue shows it: "<array job>_<task>" (or the plain job id)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "?")


class SweepTask(Checkpointable):
    """Called with (run folder, recipe, request) by each array task."""

    def __call__(self, run_dir: str, recipe: Recipe, request: RunRequest) -> str:
        folder, job = Path(run_dir), slurm_task_id()
        placement = runs.read_placement(folder)
        runs.write_placement(folder, dataclasses.replace(
            placement, backend="slurm", host=socket.gethostname(), gpus=os.environ.get("CUDA_VISIBLE_DEVICES"),
            slurm_job=job))
        request = dataclasses.replace(request, main_process_port=free_port())
        restart = os.environ.get("SLURM_RESTART_COUNT", "0")
        print(f"gaze: Slurm task {job} (restart {restart}) on {socket.gethostname()}: {folder}", flush=True)
        try:
            with runs.run_lock(folder, purpose=f"training (Slurm task {job})") as fd:
                outcome = continue_run(folder, recipe, request, lock_fd=fd, log=lambda m: print(m, flush=True),
                                       on_line=lambda _line: None)  # train.log has every line
        except GazeError as exc:  # the run folder says "failed" and why
            print(f"gaze: error: {exc}", flush=True)
            return "failed"
        print(f"gaze: {outcome.status.state}: {folder}", flush=True)
        return outcome.status.state

    def checkpoint(self, run_dir: str, recipe: Recipe, request: RunRequest) -> DelayedSubmission:
        """Timed out (or pre-empted with USR2): mark the run queued again and resubmit this task."""
        folder = Path(run_dir)
        status = runs.read_status(folder)
        if status.state in runs.ACTIVE:
            runs.write_status(folder, runs.Status(
                "queued", started_at=status.started_at, launches=status.launches,
                message="requeued by Slurm (time limit or pre-emption); continues from its newest saved state"))
        return super().checkpoint(run_dir, recipe, request)
