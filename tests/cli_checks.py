"""Driving `gaze` as a user would in the hostile-input tests: never a traceback, one error line."""

from __future__ import annotations

from collections.abc import Callable

from click.testing import CliRunner, Result

from wrapper.cli import main


def gaze_runner() -> Callable[..., Result]:
    """Run `gaze ARGS...`, checking that it never ends in a traceback or an unexpected exit code."""

    def run(*args: str) -> Result:
        result = CliRunner().invoke(main, list(args))
        assert "Traceback" not in result.output and not isinstance(result.exception, AssertionError)
        assert result.exit_code in (0, 1, 2), (result.exit_code, result.output, result.exception)
        return result

    return run


def one_error_line(result: Result) -> str:
    """The single `error: ...` line of a failed command (and that there is exactly one)."""
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    return errors[0]
