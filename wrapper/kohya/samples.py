"""The trainer's sample images and prompts: which picture shows which prompt at which point.

sd-scripts (train_util.sample_image_inference) names each sample
`<output_name>_<step:06d>_<prompt:02d>_<YYYYmmddHHMMSS>[_<seed>].png`, with `e<epoch:06d>` instead of
the step for epoch-triggered samples and for `--sample_at_first` (epoch 0). The prompt index is the
position in the prompt file after sd-scripts drops blank lines and lines starting with `#`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from wrapper.kohya.outputs import SAMPLE_DIR
from wrapper.kohya.prompt_lines import file_lines, split_line

SAMPLE_NAME = re.compile(
    r"^(?:(?P<name>.+)_)?(?P<when>e\d{6,}|\d{6,})_(?P<prompt>\d{2,})_(?P<stamp>\d{14})(?:_(?P<seed>\d+))?\.png$"
)


@dataclass(frozen=True)
class Sample:
    """One sample image; `point` orders samples: start, then steps, then epochs."""

    path: Path
    point: tuple[int, int]  # (0, 0) at first, (1, step), (2, epoch)
    prompt: int
    stamp: str
    seed: int | None

    @property
    def label(self) -> str:
        kind, n = self.point
        return "start" if kind == 0 else f"step {n}" if kind == 1 else f"epoch {n}"


def parse_sample_name(path: Path) -> Sample | None:
    """The Sample a file name describes, or None when the name is not a sample name."""
    match = SAMPLE_NAME.match(Path(path).name)
    if not match:
        return None
    when = match["when"]
    if when.startswith("e"):
        epoch = int(when[1:])
        point = (0, 0) if epoch == 0 else (2, epoch)
    else:
        point = (1, int(when))
    seed = int(match["seed"]) if match["seed"] else None
    return Sample(Path(path), point, int(match["prompt"]), match["stamp"], seed)


def find_samples(output_dir: Path) -> list[Sample]:
    """Every sample image under `<output_dir>/sample`, by point, prompt and time (newest last)."""
    folder = Path(output_dir) / SAMPLE_DIR
    found = [parse_sample_name(p) for p in folder.glob("*.png")] if folder.is_dir() else []
    return sorted((s for s in found if s), key=lambda s: (s.point, s.prompt, s.stamp, s.path.name))


def latest_per_cell(samples: list[Sample]) -> dict[tuple[tuple[int, int], int], Sample]:
    """One sample per (point, prompt): the newest (a resumed run may sample a point twice)."""
    return {(s.point, s.prompt): s for s in samples}


def read_sample_prompts(path: Path) -> list[str]:
    """The prompts of a sample prompt file (.txt, .json or .toml) in sd-scripts' order; [] if absent."""
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".json":
        items = json.loads(text)
        return [split_line(i).prompt if isinstance(i, str) else str(i.get("prompt", "")) for i in items]
    if path.suffix == ".toml":
        import toml

        data = toml.loads(text).get("prompt", {})
        return [str(sub.get("prompt", data.get("prompt", ""))) for sub in data.get("subset", [])]
    return [split_line(line).prompt for _, line in file_lines(text)]  # an indented # line is a prompt
