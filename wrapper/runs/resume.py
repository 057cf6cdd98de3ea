"""Continue a run from its newest saved state, and check that the step axis stayed continuous."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from wrapper.errors import RunError
from wrapper.files import write_json
from wrapper.kohya import outputs
from wrapper.kohya.argv import resume_args
from wrapper.kohya.checkout import require_trackers
from wrapper.recipe import Recipe
from wrapper.runs import layout as runs
from wrapper.runs.train import Log, Outcome, RunRequest, launch, launch_argv, start_run


def plan_resume(run_dir: Path) -> tuple[int, Path, list[str]]:
    """(state step, state folder, argv) for continuing `run_dir`; raises when there is nothing to continue."""
    if not runs.is_run_dir(run_dir):
        raise RunError(f"{run_dir} is not a gaze run directory (no recipe.json / run.json)")
    status = runs.read_status(run_dir)
    info = runs.read_run_info(run_dir)
    if status.state == "succeeded":
        raise RunError(f"{run_dir} already finished ({status.message}); nothing to resume")
    states = runs.saved_states(run_dir)
    if not states:
        raise RunError(
            f"{run_dir} has no saved state in output/ to resume from (sd-scripts saves one with "
            "each LoRA when save_state is on); start a new run instead"
        )
    step, state = states[-1]
    if step >= info.max_train_steps:
        raise RunError(
            f"the newest state {state.name} is at step {step}, the end of the run "
            f"({info.max_train_steps} steps); nothing to resume"
        )
    return step, state, [*launch_argv(run_dir), *resume_args(state)]


def set_aside_later_files(run_dir: Path, step: int) -> list[Path]:
    """Move LoRA files and states saved after `step` out of the way: the resumed run writes them anew,
    and an earlier checkpoint is never overwritten."""
    later = [p for p in runs.output_dir(run_dir).iterdir() if (outputs.step_of(p.name) or 0) > step]
    if not later:
        return []
    aside = runs.output_dir(run_dir) / f"superseded-{time.strftime('%Y%m%dT%H%M%S')}"
    aside.mkdir()
    return [p.rename(aside / p.name) for p in later]


def continuity(run_dir: Path, resumed_from: int) -> str:
    """Compare the TensorBoard step axis of the launches with the state the run resumed from."""
    from wrapper.curves.tblog import read_event_files
    from wrapper.kohya.logs import LOSS_CURRENT, find_event_files

    files = find_event_files(runs.logs_dir(run_dir))
    if len(files) < 2:
        return "continuity not checked: fewer than two TensorBoard folders"
    before = read_event_files(files[:-1])
    after = read_event_files(files[-1:])
    before = before[before["tag"] == LOSS_CURRENT]["step"]
    after = after[after["tag"] == LOSS_CURRENT]["step"]
    if after.empty:
        return f"broken: the resumed launch logged no {LOSS_CURRENT} points"
    first, last_before = int(after.min()), int(before.max()) if not before.empty else 0
    if first != resumed_from + 1:
        return (
            f"broken: resumed from the state at step {resumed_from}, but the resumed log starts at step "
            f"{first} (expected {resumed_from + 1})"
        )
    if last_before > resumed_from:
        return (
            f"continuous from step {first}; steps {resumed_from + 1}-{last_before} of the interrupted launch "
            "were after its last saved state and were trained again"
        )
    return f"continuous: the resumed log starts at step {first}, right after the saved state"


def retrack(run_dir: Path, trackers: tuple[str, ...]) -> bool:
    """Switch the trackers of a run's next launch (config.toml's logging arguments and run.json's record);
    False when they are already those."""
    import toml

    from wrapper.files import write_atomic
    from wrapper.kohya import configs, tomlio
    from wrapper.kohya.render import TRACKER_ARGUMENTS, tracker_arguments

    info = runs.read_run_info(run_dir)
    if list(trackers) == info.trackers:
        return False
    path = Path(run_dir) / configs.ARGUMENTS_FILE
    text = path.read_text(encoding="utf-8")
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    tables = toml.loads(text)
    record = runs.read_recipe_record(run_dir)
    chosen = tracker_arguments(trackers, Path(run_dir).name, record.baseline or record.name or info.output_name)
    logging = {}
    for key, value in tables.get("logging", {}).items():  # in place of log_with, as rendered
        logging |= chosen if key == "log_with" else {} if key in TRACKER_ARGUMENTS else {key: value}
    tables["logging"] = logging | chosen
    write_atomic(path, header + tomlio.dumps(tables))
    runs.write_run_info(run_dir, dataclasses.replace(info, trackers=list(trackers)))
    return True


def resume_run(run_dir: Path, *, log: Log = print, on_line: Log = print, lock_fd: int | None = None,
               env: dict[str, str] | None = None, trackers: tuple[str, ...] | None = None) -> Outcome:
    """Continue `run_dir` from its newest state, in the same run directory (its lock taken here,
    unless the caller holds it: `lock_fd`), with the trackers it was launched with unless `trackers` says."""
    begin = time.monotonic()
    if not runs.is_run_dir(run_dir):
        raise RunError(f"{run_dir} is not a gaze run directory (no recipe.json / run.json)")
    if lock_fd is None:
        with runs.run_lock(run_dir, purpose="training (resumed)") as fd:
            return resume_run(run_dir, log=log, on_line=on_line, lock_fd=fd, env=env, trackers=trackers)
    plan_resume(run_dir)  # refuse a run with nothing to resume before changing anything
    require_trackers(trackers or runs.read_run_info(run_dir).trackers)
    if trackers is not None and retrack(run_dir, trackers):
        log(f"trackers for this launch: {', '.join(trackers)}")
    step, state, argv = plan_resume(run_dir)
    moved = set_aside_later_files(run_dir, step)
    if moved:
        log(f"set aside {len(moved)} file(s) saved after step {step} in {moved[0].parent.name}/")
    log(f"resuming {run_dir} from {state.name} (step {step})")
    checkout = Path(runs.read_run_info(run_dir).sd_scripts)
    launches = runs.read_status(run_dir).launches + 1
    outcome = launch(run_dir, argv, checkout, on_line, launches=launches, lock_fd=lock_fd, env=env)
    note = continuity(run_dir, step)
    write_json(
        run_dir / runs.RESUME,
        {"resumed_from_step": step, "state": state.name, "set_aside": [p.name for p in moved], "continuity": note},
    )
    return dataclasses.replace(outcome, duration_s=time.monotonic() - begin, notes=(note,))


def continue_run(run_dir: Path, recipe: Recipe, request: RunRequest, *, lock_fd: int, log: Log = print,
                 on_line: Log = print, env: dict[str, str] | None = None) -> Outcome:
    """Train a run made beforehand from wherever it stands, as a requeued Slurm task must: start it
    when it never started, resume it from its newest saved state, launch it anew when it stopped
    before saving one (files it saved are set aside, never overwritten), nothing when it succeeded."""
    status = runs.read_status(run_dir)
    if status.state == "succeeded":
        log(f"{run_dir} already succeeded; nothing to do")
        return Outcome(run_dir, status, None, 0.0)
    if not (Path(run_dir) / runs.RUN).is_file():
        return start_run(recipe, request, log=log, on_line=on_line, run_dir=run_dir, lock_fd=lock_fd, env=env)
    if runs.saved_states(run_dir):
        return resume_run(run_dir, log=log, on_line=on_line, lock_fd=lock_fd, env=env)
    begin = time.monotonic()
    if runs.output_dir(run_dir).is_dir() and (moved := set_aside_later_files(run_dir, 0)):
        log(f"set aside {len(moved)} file(s) of the stopped launch in {moved[0].parent.name}/")
    log(f"{run_dir} stopped before saving a state: training it again from step 1")
    checkout = Path(runs.read_run_info(run_dir).sd_scripts)
    outcome = launch(run_dir, launch_argv(run_dir), checkout, on_line, launches=status.launches + 1,
                     lock_fd=lock_fd, env=env)
    return dataclasses.replace(outcome, duration_s=time.monotonic() - begin)
