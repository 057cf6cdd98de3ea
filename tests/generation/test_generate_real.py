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


def gaze_generate(*args: str, prompt: str = "1", output: list | None = None) -> tuple[Path, float]:
    start = time.monotonic()
    words = ["generate", *args, "--size", "128", "--prompt", prompt]
    result = CliRunner().invoke(GazeGroup(commands=[generate]), words)
    assert result.exit_code == 0, result.output[-5000:]
    if output is not None:
        output.append(result.output)
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
    sd15_only(lora_run)  # choosing checkpoints is the same for both families; SDXL generates in test_tiny_grid
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


def sd15_only(lora_run: Path) -> None:
    if lora_run.parent.name != "sd15-smoke":
        pytest.skip("SD1.5 only: it keeps the real-trainer time small")


def test_a_long_prompt_reaches_gen_img_whole(lora_run, tmp_path):
    """A 100-token prompt (the demo's tiny tokenizer makes about 100 tokens of it too) is read in 2 chunks of 75:
    no "Prompt was truncated" from gen_img.py, which cuts at 75 by default."""
    sd15_only(lora_run)
    long = tmp_path / "long.txt"
    long.write_text("negative: blurry\n" + ", ".join(["black wool coat"] * 25) + "\n")
    output: list[str] = []
    root, _ = gaze_generate(str(lora_run), "--prompts", str(long), "steps=3", "sampler=euler", output=output)
    index = check_complete(root, images=1, rows=1, cols=1)
    argv = index["processes"][0]["argv"]
    assert f"p01: {index['prompts'][0]['tokens']} CLIP tokens" in output[0] and index["prompts"][0]["tokens"] > 75
    assert argv[argv.index("--max_embeddings_multiples") + 1] == "2"
    assert ", ".join(["black wool coat"] * 25) in next((root / "jobs").iterdir()).read_text()
    log = (root / "generate.log").read_text()
    assert "prompt 1/1: black wool coat, black wool coat" in log and "Prompt was truncated" not in log


def test_the_logs_prompt_on_a_mismatched_base_of_the_same_architecture(lora_run, monkeypatch):
    """The glitch preset, narrowed to one image, on a second random SD1.5 (another seed), labelled mismatched;
    the log's first prompt (220 CLIP tokens) goes to gen_img.py in 3 chunks."""
    from wrapper.demo.models import build_sd15

    sd15_only(lora_run)
    cache = Path(os.environ.get("GAZE_TEST_CACHE") or os.environ.get("GAZE_CACHE_DIR") or ".cache/test").resolve()
    other = build_sd15(cache / "models" / "sd15-random-seed1", seed=1)
    monkeypatch.setenv("GAZE_MODEL_OTHER_SD15", str(other))
    output: list[str] = []
    root, seconds = gaze_generate(str(lora_run), "--glitch", "--base", "other-sd15", "steps=3", "cfg=7",
                                  "sampler=euler", "negative=off", output=output)
    assert "p01: 220 CLIP tokens" in output[0]
    index = check_complete(root, images=1, rows=1, cols=1)
    (process,) = index["processes"]
    argv = process["argv"]
    assert Path(argv[argv.index("--ckpt") + 1]) == other and process["base"] == "other-sd15"
    assert argv[argv.index("--max_embeddings_multiples") + 1] == "3"
    assert [(e["base"], e["mismatched"]) for e in index["images"]] == [("other-sd15", True)]
    assert "Deliberately mismatched bases" in (root / "generation.html").read_text()
    # the demo's tiny tokenizer (190 merges) makes ~700 tokens of the log's prompt: gen_img.py says it cuts them,
    # which shows that the check of the test above would see a cut
    assert "Prompt was truncated" in (root / "generate.log").read_text()
    print(f"\nmismatched base, the log's prompt: 1 image in {seconds:.0f} s")
