"""Generation grids through the real sd-scripts gen_img.py (random-weight full-size models, 128 px, CPU).

With random weights images can be black or noise, so these tests check that every file exists with
the right size and that the index and the sheets are complete, not what the images show.
Set GAZE_TEST_CACHE to a folder holding (or to receive) the demo models, tokenizers and dataset.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from wrapper.cli import GazeGroup
from wrapper.cli.generate import generate

pytestmark = [pytest.mark.sd_scripts, pytest.mark.slow]

GRID = ["sampler=dpm++2m,euler", "cfg=3,7", "negative=on,off", "steps=3"]


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def lora_run(request, tmp_path_factory) -> Path:
    """A finished CPU smoke run (`<family>-smoke`: LoRAs at steps 2 and 4 and a final one)."""
    from recipes import builtin_registry
    from wrapper.demo.assets import ensure_demo_assets
    from wrapper.kohya.checkout import find_checkout
    from wrapper.runs.train import RunRequest, start_run

    family = request.param
    cache = Path(os.environ.get("GAZE_TEST_CACHE") or os.environ.get("GAZE_CACHE_DIR") or ".cache/test").resolve()
    assets = ensure_demo_assets(cache, family, log=lambda _m: None)
    run_request = RunRequest(dataset=assets.dataset_dir, model=assets.model_path, cache_dir=cache,
                             runs_dir=tmp_path_factory.mktemp(family) / "runs", checkout=find_checkout(),
                             tokenizer_cache_dir=assets.tokenizer_cache_dir, threads=2)
    outcome = start_run(builtin_registry().resolve(f"{family}-smoke"), run_request, log=lambda _m: None,
                        on_line=lambda _l: None)
    assert outcome.status.state == "succeeded", (outcome.run_dir / "train.log").read_text()[-3000:]
    return outcome.run_dir


def gaze_generate(*args: str) -> tuple[Path, float]:
    start = time.monotonic()
    result = CliRunner().invoke(GazeGroup(commands=[generate]), ["generate", *args, "--size", "128", "--prompt", "1"])
    assert result.exit_code == 0, result.output[-5000:]
    page = next(line for line in result.output.splitlines() if line.startswith("page: "))
    return Path(page.removeprefix("page: ")).parent, time.monotonic() - start


def check_complete(root: Path, images: int, rows: int, cols: int) -> dict:
    index = json.loads((root / "index.json").read_text())
    assert index["state"] == "succeeded" and len(index["images"]) == images
    for entry in index["images"]:
        with Image.open(root / entry["file"]) as image:
            assert image.size == (128, 128), entry["file"]
    (sheet,) = index["sheets"]
    assert (sheet["row_count"], sheet["col_count"]) == (rows, cols)
    with Image.open(root / sheet["file"]) as image:
        assert image.size == tuple(sheet["size"])
    assert (root / "generation.html").read_text().count("data:image/png;base64,") == 1
    return index


def test_tiny_grid(lora_run):
    root, seconds = gaze_generate(str(lora_run), *GRID)
    index = check_complete(root, images=8, rows=2, cols=4)
    assert len(index["processes"]) == 2  # one per sampler, the rest of the grid batched
    assert {e["sd_scripts_sampler"] for e in index["images"]} == {"dpmsolver++", "euler"}
    print(f"\n{lora_run.parent.name}: 8 images in {seconds:.0f} s ({seconds / 8:.1f} s per image)")


def test_checkpoints_over_time_and_same_images_again(lora_run):
    """Every checkpoint in one sheet; the final checkpoint's images equal the first test's."""
    root, _ = gaze_generate(
        str(lora_run), "--checkpoint", "all", "sampler=euler", "cfg=7", "negative=on,off", "steps=3"
    )
    index = check_complete(root, images=6, rows=1, cols=6)
    assert [s["checkpoint"] for s in index["sources"]] == ["step2", "step4", "final"]
    first = sorted(p for p in (lora_run / "generations").iterdir() if p != root)[0]
    for entry in index["images"]:
        if entry["checkpoint"] == "final":
            again = Image.open(root / entry["file"]).tobytes()
            assert again == Image.open(first / entry["file"]).tobytes(), entry["file"]
