"""The exact command line that launches sd-scripts under accelerate (built here, run by wrapper.launch)."""

from __future__ import annotations

from pathlib import Path


def accelerate_argv(
    python: str,
    script: str,
    config_file: Path,
    *,
    mixed_precision: str,
    threads: int,
    gpus: int = 1,
    main_process_port: int | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """`python -m accelerate.commands.launch ... <script> --config_file <file> [extra]`.

    Every launcher value is passed explicitly, so no `accelerate config` file is needed and none is
    read. (The script's own mixed_precision decides; the launcher's copy only silences a warning.)
    Runs side by side on one machine each need their own `main_process_port` (accelerate's default
    is 29500 for all of them).
    """
    argv = [
        python,
        "-m",
        "accelerate.commands.launch",
        "--num_cpu_threads_per_process",
        str(threads),
        "--num_processes",
        str(gpus),
        "--num_machines",
        "1",
        "--mixed_precision",
        mixed_precision,
        "--dynamo_backend",
        "no",
    ]
    if gpus > 1:
        argv.append("--multi_gpu")
    if main_process_port is not None:
        argv += ["--main_process_port", str(main_process_port)]
    return [*argv, script, "--config_file", str(config_file), *extra]


def resume_args(state: Path) -> tuple[str, ...]:
    """Continue from a saved state with the step count carried on (not restarted at 0)."""
    return ("--resume", str(state), "--skip_until_initial_step")
