"""Everything `gaze demo` needs, built once under a cache folder: a model, its tokenizers, a dataset.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wrapper.demo.cache import is_complete
from wrapper.demo.models import build_model, model_params
from wrapper.demo.photos import synth_dataset
from wrapper.demo.tokenizers import build_tokenizers
from wrapper.errors import GazeError
from wrapper.recipe import FAMILIES


@dataclass(frozen=True)
class DemoAssets:
    """Paths sd-scripts needs for an offline run."""

    tokenizer_cache_dir: Path
    model_path: Path
    dataset_dir: Path


def ensure_demo_assets(cache_dir: Path, family: str, *, log: Callable[[str], None] = print) -> DemoAssets:
    """Build whatever is missing under `cache_dir` for `family` ("sd15" or "sdxl") and return the paths."""
    if family not in FAMILIES:
        raise GazeError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    cache_dir = Path(cache_dir)
    assets = DemoAssets(
        cache_dir / "tokenizers",
        cache_dir / "models" / f"{family}-random",
        cache_dir / "datasets" / "synth-fashion",
    )
    log(f"tokenizers: {assets.tokenizer_cache_dir}")
    build_tokenizers(assets.tokenizer_cache_dir)
    if not is_complete(assets.model_path, model_params(family, 0, None)):
        log(f"building a random-weight {family} model (about a minute): {assets.model_path}")
        start = time.monotonic()
        build_model(assets.model_path, family, log=log)
        log(f"  built in {time.monotonic() - start:.0f} s")
    log(f"model: {assets.model_path}")
    synth_dataset(assets.dataset_dir)
    log(f"dataset: {assets.dataset_dir}")
    return assets
