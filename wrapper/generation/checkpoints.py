"""The LoRA files of finished runs: which checkpoints a run has, what they were trained on, and the
base checkpoints they are rendered on (their own, or deliberately another of the same architecture)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wrapper.errors import ConfigError, RunError, did_you_mean
from wrapper.generation.grid import DEFAULT_BASE
from wrapper.kohya import models
from wrapper.kohya.gen_img import lora_base_problem
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


@dataclass(frozen=True)
class Base:
    """The checkpoint one image is rendered on: the LoRA's own ("default") or another one, deliberately."""

    name: str  # "default", a name from gaze.toml [models], or a path as given
    model: Path
    mismatched: bool  # rendered on another base than the LoRA was trained on (the log's glitch)


def own_base(source: Source) -> Base:
    return Base(DEFAULT_BASE, source.model, False)


def _checkpoint_path(spec: str, named: Mapping[str, Path]) -> Path:
    if spec in named:
        return Path(named[spec])
    path = Path(spec).expanduser()
    if path.exists():
        return path
    known = f" (known: {', '.join(sorted(named))})" if named else ""
    raise ConfigError(f"base {spec!r}: no checkpoint named {spec!r}{did_you_mean(spec, named)} in gaze.toml "
                      f"[models]{known} and no such file; add `{spec} = \"PATH\"` under [models], or give the "
                      "checkpoint's path")


def resolve_bases(sources: Sequence[Source], specs: Sequence[str],
                  named: Mapping[str, Path]) -> dict[Source, list[Base]]:
    """The bases each source is rendered on, in the order given; a base of another architecture than the
    LoRA's, or the LoRA's own checkpoint under another name, is refused before anything starts."""
    out: dict[Source, list[Base]] = {source: [] for source in sources}
    families: dict[Path, str] = {}

    def family(path: Path) -> str:
        if path not in families:
            families[path] = models.checkpoint_family(path)
        return families[path]

    for spec in specs:
        path = None if spec == DEFAULT_BASE else _checkpoint_path(spec, named)
        for source in sources:
            if path is None:
                out[source].append(own_base(source))
                continue
            if path.resolve() == source.model.resolve():
                raise ConfigError(f"base {spec!r} is {path}, the checkpoint {source.label} was trained on; use "
                                  f"base={DEFAULT_BASE} for it, and another checkpoint for a mismatched base")
            problem = lora_base_problem(family(source.model), family(path))
            if problem:
                names = models.CHECKPOINT_FAMILIES
                raise ConfigError(f"base {spec!r} ({path}) is an {names[family(path)]} checkpoint, but {source.label} "
                                  f"was trained on an {names[family(source.model)]} one ({source.model}): {problem}; "
                                  "a mismatched base must be of the LoRA's own architecture")
            out[source].append(Base(spec, path, True))
    return out
