"""The `gaze` command line: thin click commands over the library.

Each command group lives in its own module and is registered here.
"""

from __future__ import annotations

import os
import sys

import click

from wrapper.errors import GazeError


class GazeGroup(click.Group):
    """Print a GazeError (or what the operating system refused) as one clear message and exit 1,
    unless --debug asks for the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (GazeError, OSError) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            message = str(exc) if isinstance(exc, GazeError) else os_error_line(exc)
            click.secho(f"error: {message}", fg="red", err=True)
            sys.exit(1)


def os_error_line(exc: OSError) -> str:
    """'cannot use PATH: File name too long' for an error gaze did not foresee at that place."""
    paths = [os.fsdecode(p) for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(repr(p) for p in paths) or "a file"
    return f"cannot use {where}: {exc.strerror or exc} (rerun with --debug for the traceback)"


@click.group(cls=GazeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.version_option(package_name="gaze")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Run systematic LoRA experiments on Stable Diffusion with kohya-ss sd-scripts.

    Example: gaze config sd15-standard+no-bucket+high-lr=3e-4 --out configs/
    """
    ctx.ensure_object(dict)["debug"] = debug


def _register() -> None:
    from wrapper.cli import data, export, generate, metrics, recipes, reports, runs, sweeps, training

    for module in (recipes, training, sweeps, runs, data, reports, generate, metrics, export):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
