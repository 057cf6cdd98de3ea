"""One training run, end to end: check, prepare, render, record, launch, judge.

Everything that can be checked is checked before the trainer starts; the run directory is
created only when its configs are known to be good, and removed again if a later check fails.
A run folder made beforehand (a sweep's member, status "queued") is kept instead, marked "failed"
with the reason.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wrapper.errors import ConfigError, DatasetError, GazeError, RunError, collect
from wrapper.files import write_atomic, write_json
from wrapper.kohya import argv as kohya_argv
from wrapper.kohya import configs, interface, outputs
from wrapper.kohya.checkout import require_trackers, trainer_env, trainer_python
from wrapper.kohya.failures import Failure, classify
from wrapper.kohya.render import SCRIPTS, Places
from wrapper.launch import run_streaming
from wrapper.recipe import Recipe
from wrapper.runs import layout as runs
from wrapper.runs import provenance
from wrapper.runs.inputs import Log, prepare_images
from wrapper.settings import Settings, dataset_for, model_for


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """Everything a run needs besides its recipe: machine paths and launcher choices."""

    dataset: Path
    model: Path
    runs_dir: Path
    cache_dir: Path
    checkout: Path
    tokenizer_cache_dir: Path | None = None
    gpus: int = 1
    threads: int | None = None  # CPU threads per process; None: all cores on a CPU, 8 on a GPU
    main_process_port: int | None = None  # accelerate's; runs side by side need one each
    trackers: tuple[str, ...] = ("tensorboard",)  # settings.check_trackers: tensorboard, and wandb when asked


def request_for(
    recipe: Recipe,
    settings: Settings,
    checkout: Path,
    *,
    dataset: str | os.PathLike | None = None,
    model: str | os.PathLike | None = None,
    runs_dir: str | os.PathLike | None = None,
    gpus: int = 1,
    threads: int | None = None,
    trackers: tuple[str, ...] | None = None,
) -> RunRequest:
    """A recipe's machine paths: the command line's, else the settings'."""
    chosen = model_for(settings, recipe.checkpoint_name, model, wanted_by=f"recipe {recipe.name!r}")
    own = settings.models.get(recipe.family)
    if recipe.base_model != "default" and (recipe.base_model == recipe.family or
                                           (own is not None and own.resolve() == chosen.resolve())):
        raise ConfigError(
            f"recipe {recipe.name!r} asks for a deliberately mismatched base, but {chosen} is the {recipe.family} "
            f"checkpoint it would train on anyway; name another checkpoint (mismatched-base=NAME, NAME under "
            "[models] in gaze.toml)"
        )
    return RunRequest(
        dataset=dataset_for(settings, dataset),
        model=chosen,
        runs_dir=Path(runs_dir) if runs_dir else settings.runs_dir,
        cache_dir=settings.cache_dir,
        checkout=checkout,
        tokenizer_cache_dir=settings.tokenizer_cache_dir,
        gpus=gpus,
        threads=threads,
        trackers=trackers or settings.trackers,
    )


@dataclass(frozen=True)
class Outcome:
    run_dir: Path
    status: runs.Status
    failure: Failure | None
    duration_s: float
    notes: tuple[str, ...] = ()


def failure_class_of(error: GazeError) -> str:
    """The failure class of a run refused before its trainer started."""
    return "data" if isinstance(error, DatasetError) else "configuration"


def recipe_record(recipe: Recipe) -> runs.RecipeRecord:
    return runs.RecipeRecord(
        name=recipe.name,
        baseline=recipe.baseline or recipe.name,
        family=recipe.family,
        modifiers=list(recipe.modifiers),
        glitches=list(recipe.glitches),
        deliberate_mismatch=recipe.base_model != "default",
        description=recipe.description,
        recipe=recipe.to_dict(),
    )


def resolve_attention(recipe: Recipe, device: dict[str, Any]) -> str:
    choice = recipe.training.attention
    if choice != "auto":
        return choice
    return "xformers" if device["cuda_available"] and device["xformers"] else "sdpa"


def resolve_checkpointing(recipe: Recipe, device: dict[str, Any]) -> bool:
    """Gradient checkpointing trades ~20% speed for ~5x less activation memory: use it only when needed."""
    if recipe.training.gradient_checkpointing is not None:
        return recipe.training.gradient_checkpointing
    if not device["cuda_available"]:
        return recipe.family == "sdxl"  # host memory is the limit on a CPU
    memory = device.get("memory_gib") or 0
    return memory < (40 if recipe.family == "sdxl" else 12)


def device_problems(recipe: Recipe, device: dict[str, Any], request: RunRequest) -> list[str]:
    problems = []
    t = recipe.training
    if not device["cuda_available"]:
        if t.mixed_precision == "fp16":
            problems.append("mixed_precision 'fp16' on a machine without a GPU: accelerate refuses it; use bf16 or no")
        if t.attention == "xformers":
            problems.append("attention 'xformers' needs a CUDA GPU; use 'sdpa'")
    if t.attention == "xformers" and not device["xformers"]:
        problems.append("attention 'xformers' but xformers is not installed in the trainer's environment")
    if request.gpus > max(device["device_count"], 1):
        problems.append(f"--gpus {request.gpus} but the trainer sees {device['device_count']} GPU(s)")
    if t.mixed_precision == "bf16" and not device["bf16"]:
        problems.append("mixed_precision 'bf16' is not supported by this GPU; use fp16")
    return problems


def check_version(facts: dict[str, Any], checkout: Path) -> None:
    """The checkout must speak v0.10.1's interface: the committed table is the reference."""
    pinned = interface.committed_interface()
    if facts["scripts"] != pinned["scripts"]:
        ours, theirs = pinned["scripts"]["train_network.py"], facts["scripts"]["train_network.py"]
        differ = sorted(set(ours) ^ set(theirs))[:6] or ["argument types or defaults"]
        raise RunError(
            f"sd-scripts at {checkout} is not {pinned['sd_scripts']['tag']} (commit "
            f"{pinned['sd_scripts']['commit'][:9]}): its arguments differ ({', '.join(differ)}); "
            "check out the pinned tag or point SD_SCRIPTS_DIR at one"
        )


def threads_for(request: RunRequest, device: dict[str, Any]) -> int:
    if request.threads:
        return request.threads
    cores = os.cpu_count() or 1
    return max(1, cores // request.gpus) if not device["cuda_available"] else min(8, cores)


def absolute(request: RunRequest) -> RunRequest:
    """The request with every path absolute (sd-scripts runs in its checkout, not here) and writable
    into sd-scripts' UTF-8 TOML files."""
    paths = {"--dataset": request.dataset, "--model": request.model, "--runs-dir": request.runs_dir,
             "cache_dir": request.cache_dir, "tokenizer_cache_dir": request.tokenizer_cache_dir}
    for option, path in paths.items():
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"{option} {os.fsencode(path)!r} is not valid UTF-8: sd-scripts reads paths from "
                              "UTF-8 TOML files; rename the file or folder") from None
    for option, folder in (("--runs-dir", request.runs_dir), ("cache_dir", request.cache_dir)):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{option} {folder} is a file; expected a folder (or a path where one can be made)")
    tokenizers = request.tokenizer_cache_dir
    return dataclasses.replace(
        request, dataset=request.dataset.resolve(), model=request.model.resolve(),
        runs_dir=request.runs_dir.resolve(), cache_dir=request.cache_dir.resolve(),
        tokenizer_cache_dir=tokenizers.resolve() if tokenizers else None)


def prepare_inputs(recipe: Recipe, request: RunRequest, log: Log) -> tuple[Recipe, Path]:
    """Check the model, prepare and audit the images: (the recipe as it will run, the prepared folder)."""
    return prepare_images(recipe, request.dataset, request.model, request.cache_dir, log)


def places_for(recipe: Recipe, request: RunRequest, image_dir: Path, folder: Path) -> Places:
    """Where the configs of a run (or of `gaze config`) written into `folder` point."""
    from wrapper.dataset.scan import image_folders

    return Places(
        image_dir=image_dir,
        model=request.model,
        output_dir=runs.output_dir(folder),
        logging_dir=runs.logs_dir(folder),
        sample_prompts=folder / configs.PROMPTS_FILE,
        output_name=outputs.output_name_for(recipe.name),
        tokenizer_cache_dir=request.tokenizer_cache_dir,
        more_image_dirs=image_folders(image_dir),
        trackers=request.trackers,
        run_name=folder.name,
    )


def render_configs(recipe: Recipe, request: RunRequest, folder: Path, log: Log) -> configs.Rendered:
    """What `gaze config` writes: the run's own path from recipe and settings to configs, with no device
    (attention and gradient checkpointing take the recipe's values; a run decides them on its machine)."""
    request = absolute(request)
    recipe, image_dir = prepare_inputs(recipe, request, log)
    places = places_for(recipe, request, image_dir, folder.resolve())
    if recipe.training.attention != "auto":  # "auto" is decided by the machine that trains
        places = dataclasses.replace(places, attention=recipe.training.attention)
    return configs.render(recipe, places, folder.resolve())


def prepare_run(recipe: Recipe, request: RunRequest, log: Log, *,
                run_dir: Path | None = None) -> tuple[Path, list[str], Recipe]:
    """All checks and files of a new run. Returns (run_dir, argv, effective recipe).

    Into `run_dir` when given (made by new_queued_run): a check that fails leaves it "failed"
    with the message (or "interrupted" on Ctrl-C), where a folder made here is removed again."""
    if run_dir is not None:
        return _prepare_queued(recipe, request, log, Path(run_dir).resolve())
    require_trackers(request.trackers)
    request = absolute(request)
    recipe, image_dir = prepare_inputs(recipe, request, log)
    run_dir = runs.new_run_dir(request.runs_dir, recipe.name)
    try:
        return run_dir, _write_run(recipe, request, places_for(recipe, request, image_dir, run_dir), log), recipe
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # ours, and nothing ran in it
        raise


def _prepare_queued(recipe: Recipe, request: RunRequest, log: Log, run_dir: Path) -> tuple[Path, list[str], Recipe]:
    if not runs.is_run_dir(run_dir):
        raise RunError(f"{run_dir} is not a queued run folder (no {runs.STATUS}); make one with new_queued_run")
    try:
        require_trackers(request.trackers)
        request = absolute(request)
        recipe, image_dir = prepare_inputs(recipe, request, log)
        return run_dir, _write_run(recipe, request, places_for(recipe, request, image_dir, run_dir), log), recipe
    except GazeError as exc:
        runs.write_status(run_dir, runs.Status("failed", ended_at=runs.utc_now(), failure_class=failure_class_of(exc),
                                               message=str(exc)))
        raise
    except KeyboardInterrupt:
        runs.write_status(run_dir, runs.Status("interrupted", ended_at=runs.utc_now(),
                                               message="stopped by a signal before its trainer started"))
        raise


def _write_run(recipe: Recipe, request: RunRequest, places: Places, log: Log) -> list[str]:
    run_dir = places.output_dir.parent
    draft = configs.render(recipe, places, run_dir)
    dataset_file = run_dir / configs.DATASET_FILE
    write_atomic(dataset_file, draft.texts()[configs.DATASET_FILE])
    log("asking sd-scripts to check the configs and the device")
    facts, schema_verdicts, device = interface.preflight(request.checkout, dataset_file)
    check_version(facts, request.checkout)
    collect(device_problems(recipe, device, request), ConfigError, "sd-scripts would refuse this run")
    resolved = dataclasses.replace(
        places,
        attention=resolve_attention(recipe, device),
        gradient_checkpointing=resolve_checkpointing(recipe, device),
    )
    rendered = configs.render(recipe, resolved, run_dir)
    problems = configs.problems(rendered.script, rendered.arguments, rendered.dataset, facts=facts,
                                schema_verdicts=schema_verdicts, where=run_dir)
    collect(problems, ConfigError, "the rendered configs are not valid for sd-scripts")
    for name, text in rendered.texts().items():
        write_atomic(run_dir / name, text)
    threads = threads_for(request, device)
    runs.write_recipe_record(run_dir, recipe_record(recipe))
    runs.write_run_info(
        run_dir,
        runs.RunInfo(
            model=str(places.model),
            tokenizer_cache_dir=str(places.tokenizer_cache_dir) if places.tokenizer_cache_dir else None,
            output_name=places.output_name,
            family=recipe.family,
            sd_scripts=str(request.checkout),
            dataset_source=str(request.dataset),
            image_dir=str(places.image_dir),
            gpus=request.gpus,
            threads=threads,
            mixed_precision=recipe.training.mixed_precision,
            script=rendered.script,
            max_train_steps=recipe.training.max_train_steps,
            main_process_port=request.main_process_port,
            trackers=list(request.trackers),
        ),
    )
    argv = launch_argv(run_dir)
    write_json(run_dir / runs.COMMAND, {"argv": argv, "cwd": str(request.checkout)})
    environment = provenance.environment(request.checkout, device)
    pin = interface.committed_interface()["sd_scripts"]
    # check_version passed: whatever the checkout's git state, its interface is the pinned one
    environment["sd_scripts"]["interface"] = f"identical to {pin['tag']} ({pin['commit'][:9]})"
    write_json(run_dir / runs.ENVIRONMENT, environment)
    write_json(run_dir / runs.MANIFEST, provenance.dataset_manifest(places.image_dir, recipe.data.caption_extension))
    runs.write_status(run_dir, runs.Status("queued"))
    return argv


def launch_argv(run_dir: Path) -> list[str]:
    """The trainer's command line, built from the run's records (never read back from command.json,
    which is a record for people: a run folder from elsewhere cannot make gaze run anything else)."""
    info = runs.read_run_info(run_dir)
    if info.script not in SCRIPTS.values():
        raise RunError(f"{run_dir / runs.RUN}: key 'script' is {info.script!r}; expected one of "
                       f"{', '.join(SCRIPTS.values())}")
    return kohya_argv.accelerate_argv(
        trainer_python(),
        info.script,
        run_dir / configs.ARGUMENTS_FILE,
        mixed_precision=info.mixed_precision,
        threads=info.threads,
        gpus=info.gpus,
        main_process_port=info.main_process_port,
    )


def launch(run_dir: Path, argv: list[str], checkout: Path, on_line: Log, *, launches: int,
           lock_fd: int | None = None, env: dict[str, str] | None = None) -> Outcome:
    """Run the trainer in `run_dir` and judge the result by its outputs, not only its exit code.

    The run's lock is held (taken here unless the caller holds it: `lock_fd`) until the trainer's
    whole process group has ended, even if this process is killed. `env` is added to the trainer's
    environment (a pool pins each run to its GPUs with CUDA_VISIBLE_DEVICES). A trainer stopped by
    SIGINT/SIGTERM, forwarded by gaze or sent by `gaze cancel` or a scheduler, is "interrupted".
    """
    if lock_fd is None:
        with runs.run_lock(run_dir, purpose="training") as fd:
            return launch(run_dir, argv, checkout, on_line, launches=launches, lock_fd=fd, env=env)
    started = runs.utc_now()
    runs.write_status(run_dir, runs.Status("running", started_at=started, launches=launches))
    log_path = run_dir / runs.LOG
    offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n=== gaze launch {launches} at {started}: {' '.join(argv)}\n")
    wandb_dir = runs.logs_dir(run_dir) if "wandb" in runs.read_run_info(run_dir).trackers else None
    child_env = {**trainer_env(checkout, wandb_dir=wandb_dir), **(env or {})}
    result = run_streaming(argv, cwd=checkout, env=child_env, log_path=log_path,
                           on_line=on_line, keep_fds=(lock_fd,),
                           on_start=lambda group: runs.note_trainer_group(lock_fd, group))
    final = runs.final_lora(run_dir, runs.read_run_info(run_dir).output_name)
    ended = runs.utc_now()
    if result.stopped_by_signal:
        status = runs.Status(
            "interrupted",
            started,
            ended,
            result.returncode,
            None,
            "stopped by a signal; `gaze resume` continues from the last saved state",
            launches,
        )
        failure = None
    elif result.returncode == 0 and final.is_file():
        status, failure = runs.Status("succeeded", started, ended, 0, None, str(final), launches), None
    else:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            log.seek(offset)
            text = log.read()
        failure = classify(text, result.returncode)
        if result.returncode == 0:
            failure = dataclasses.replace(
                failure, evidence=f"exit code 0 but no {final.name} was saved; {failure.evidence}"
            )
        status = runs.Status("failed", started, ended, result.returncode, failure.kind, failure.evidence, launches)
    runs.write_status(run_dir, status)
    notes = _record_hparams(run_dir)
    return Outcome(run_dir, status, failure, result.duration_s, notes)


def _record_hparams(run_dir: Path) -> tuple[str, ...]:
    """The run in TensorBoard's HParams dashboard (`tensorboard --logdir runs`); a note if it cannot be."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        return ("tensorboard is not installed: no HParams session written",)
    from wrapper.runs.trackers import write_hparams

    try:
        write_hparams(run_dir)
    except (OSError, ValueError, RunError) as exc:
        return (f"HParams session not written: {exc}",)
    return ()


def start_run(recipe: Recipe, request: RunRequest, *, log: Log = print, on_line: Log = print,
              run_dir: Path | None = None, lock_fd: int | None = None, env: dict[str, str] | None = None) -> Outcome:
    """Check, prepare and launch one new run of `recipe` (into `run_dir` when a sweep made it)."""
    begin = time.monotonic()
    run_dir, argv, _ = prepare_run(recipe, request, log, run_dir=run_dir)
    log(f"run directory: {run_dir}")
    outcome = launch(run_dir, argv, request.checkout, on_line, launches=1, lock_fd=lock_fd, env=env)
    return dataclasses.replace(outcome, duration_s=time.monotonic() - begin)
