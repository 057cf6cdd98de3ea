"""Why an sd-scripts run failed, read from its log: a class, the evidence, and what to do."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Most specific first: a data error can also end in an AssertionError.
PATTERNS: tuple[tuple[str, str, str], ...] = (
    (
        "out-of-memory",
        r"CUDA out of memory|OutOfMemoryError|DefaultCPUAllocator: can't allocate|"
        r"std::bad_alloc|MemoryError",
        "lower the batch size or resolution, turn on gradient_checkpointing, or cache latents",
    ),
    (
        "data",
        r"image too large, but cropping and bucketing are disabled|image size is small|No data found|"
        r"caption file is empty|UnicodeDecodeError|cannot identify image file|image file is truncated",
        "check the dataset with `gaze audit DATASET`; buckets off needs every image at exactly the resolution",
    ),
    (
        "missing-dependency",
        r"ModuleNotFoundError|No module named|ImportError|No xformers|"
        r"operator torchvision::\w+ does not exist|bitsandbytes",
        "install the trainer's requirements: `make setup-train` (xformers and bitsandbytes only on CUDA)",
    ),
    (
        "configuration",
        r"AssertionError|ValueError|TypeError|KeyError|MultipleInvalid|TomlDecodeError|"
        r"unrecognized arguments|error: argument|fp16 mixed precision requires a GPU",
        "check the configs with `gaze validate RUN_DIR`; the log tail shows the failing check",
    ),
)
SIGNAL_KILLED = {-9, 137}


@dataclass(frozen=True)
class Failure:
    kind: str
    evidence: str
    suggestion: str


def classify(log_text: str, exit_code: int | None) -> Failure:
    """The most specific failure class whose pattern appears in the log (last match wins ties)."""
    for kind, pattern, suggestion in PATTERNS:
        matches = list(re.finditer(pattern, log_text))
        if matches:
            line_start = log_text.rfind("\n", 0, matches[-1].start()) + 1
            line_end = log_text.find("\n", matches[-1].end())
            return Failure(kind, log_text[line_start : line_end if line_end >= 0 else None].strip(), suggestion)
    if exit_code in SIGNAL_KILLED:
        return Failure(
            "out-of-memory",
            f"killed by SIGKILL (exit code {exit_code})",
            "the kernel's OOM killer is the usual cause: free memory or shrink the run",
        )
    last = next((line.strip() for line in reversed(log_text.splitlines()) if line.strip()), "")
    return Failure(
        "other",
        f"exit code {exit_code}; last line: {last}" if last else f"exit code {exit_code}",
        "read the log tail; `gaze resume RUN_DIR` continues from the last saved state",
    )
