"""The LoRA files of finished runs: which checkpoints a run has and what they were trained on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wrapper.errors import RunError, did_you_mean
from wrapper.runs import layout as runs
from wrapper.runs.layout import RunInfo

FINAL = "final"


@dataclass(frozen=True)
class Source:
    """One LoRA file to generate with: a checkpoint of a run, and the base model it was trained on."""

    label: str
    run_dir: Path
    checkpoint: str
    step: int | None
    lora: Path
    model: Path
    family: str
    tokenizer_cache_dir: Path | None


def _checkpoint_name(key: str, available: dict) -> str | None:
    if key in ("final", "last"):
        key = FINAL
    elif key.removeprefix("step").isdigit():
        key = f"step{int(key.removeprefix('step'))}"
    else:
        key = next((n for n in available if key in (n.lower(), available[n][1].name.lower())), key)
    return key if key in available else None


def resolve_checkpoints(run_dir: Path, specs: Sequence[str], info: RunInfo) -> list[tuple[str, int | None, Path]]:
    """(name, step, file) per --checkpoint: 'final', a step ('1000' or 'step1000'), a file stem, or 'all'."""
    available = runs.list_checkpoints(run_dir, info.output_name)
    if not available:
        raise RunError(
            f"{run_dir}: the run has no LoRA file in {runs.output_dir(run_dir)}; expected "
            f"{runs.final_lora(run_dir, info.output_name).name} (did the training finish? see {runs.STATUS})"
        )
    chosen: list[str] = []
    for spec in specs or [FINAL]:
        key = spec.strip().lower()
        names = list(available) if key == "all" else [_checkpoint_name(key, available)]
        if names == [None]:
            raise RunError(
                f"{run_dir}: option --checkpoint: no checkpoint {spec!r}{did_you_mean(key, available)}; "
                f"expected one of {', '.join(available)} or 'all'"
            )
        chosen += [n for n in names if n not in chosen]
    return [(name, *available[name]) for name in chosen]


def find_sources(run_dirs: Sequence[Path], checkpoints: Sequence[str]) -> list[Source]:
    """Every (run, checkpoint) LoRA to generate with, labelled for sheets and folder names."""
    unique = list(dict.fromkeys(Path(d).resolve() for d in run_dirs))
    infos = [runs.read_run_info(run_dir) for run_dir in unique]
    labels = runs.run_labels(unique, [runs.recipe_name(d) for d in unique])
    sources = []
    for run_dir, info, run_label in zip(unique, infos, labels, strict=True):
        model = Path(info.model)
        if not model.exists():
            raise RunError(f"{run_dir / runs.RUN}: key 'model' is {str(model)!r}, which does not exist")
        tokenizers = Path(info.tokenizer_cache_dir) if info.tokenizer_cache_dir else None
        for name, step, lora in resolve_checkpoints(run_dir, checkpoints, info):
            label = name if len(unique) == 1 else f"{run_label} {name}"
            sources.append(Source(label, run_dir, name, step, lora, model, info.family, tokenizers))
    return sources
