"""Generation grids through the real sd-scripts gen_img.py (random-weight full-size models, 128 px, CPU).

With random weights images can be black or noise, so these tests check that every file exists with
the right size and that the index and the sheets are complete, not what the images show.
Set GAZE_CACHE_DIR to a folder holding (or to receive) the demo models, tokenizers and dataset.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from wrapper.cli import GazeGroup
from wrapper.cli.generate import generate

pytestmark = [pytest.mark.sd_scripts, pytest.mark.slow]

# Test scaffolding, not part of gaze: writes a networks.lora LoRA with small random weights for a
# Diffusers model folder. The models are built on the meta device, so no weights are loaded; only
# the module names and shapes matter, and they are the ones gen_img.py applies the LoRA to.
MAKE_LORA = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    from accelerate import init_empty_weights
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    import networks.lora as lora

    family, model, out, names = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]
    with init_empty_weights():
        if family == "sdxl":
            from library.sdxl_original_unet import SdxlUNet2DConditionModel
            unet = SdxlUNet2DConditionModel()
            text = [CLIPTextModel(CLIPTextConfig.from_pretrained(model / "text_encoder")),
                    CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(model / "text_encoder_2"))]
        else:
            from library.original_unet import UNet2DConditionModel
            c = json.loads((model / "unet" / "config.json").read_text())
            unet = UNet2DConditionModel(
                c["sample_size"], c["attention_head_dim"], c["cross_attention_dim"],
                c.get("use_linear_projection", False), c.get("upcast_attention", False),
            )
            text = CLIPTextModel(CLIPTextConfig.from_pretrained(model / "text_encoder"))
    torch.manual_seed(0)
    network = lora.create_network(1.0, 4, 1.0, None, text, unet)
    network.apply_to(text, unet)
    for name, p in network.named_parameters():
        if "lora_up" in name:
            torch.nn.init.normal_(p, std=0.01)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        network.save_weights(str(out / name), torch.float32, {"ss_network_module": "networks.lora"})
    print("lora written:", names)
    """
)

GRID = ["sampler=dpm++2m,euler", "cfg=3,7", "negative=on,off", "steps=3"]


def demo_assets(family: str) -> tuple[Path, Path]:
    """(model folder, tokenizer cache) from GAZE_CACHE_DIR, built there when missing."""
    cache = Path(os.environ.get("GAZE_CACHE_DIR", ".cache")).resolve()
    model, tokenizers = cache / "models" / f"{family}-random", cache / "tokenizers"
    if not (model / "model_index.json").is_file() or not tokenizers.is_dir():
        from wrapper.synth import ensure_demo_assets

        assets = ensure_demo_assets(cache, family)
        model, tokenizers = assets.model_path, assets.tokenizer_cache_dir
    return model, tokenizers


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def lora_run(request, tmp_path_factory) -> Path:
    """A finished run directory whose output/ holds a step checkpoint and a final LoRA."""
    from wrapper.kohya.checkout import find_checkout, trainer_env, trainer_python
    from wrapper.launch import run_streaming

    family = request.param
    model, tokenizers = demo_assets(family)
    run = tmp_path_factory.mktemp(family) / "runs" / f"{family}-standard" / "20250101T000000Z-abc123"
    script = run.parent / "make_lora.py"
    script.parent.mkdir(parents=True)
    script.write_text(MAKE_LORA)
    checkout = find_checkout()
    names = ["smoke-step00000001.safetensors", "smoke.safetensors"]
    argv = [trainer_python(), str(script), family, str(model), str(run / "output"), *names]
    result = run_streaming(argv, cwd=checkout, env=trainer_env(checkout), log_path=run.parent / "make_lora.log")
    assert result.returncode == 0, (run.parent / "make_lora.log").read_text()[-3000:]
    info = {"model": str(model), "tokenizer_cache_dir": str(tokenizers), "output_name": "smoke"}
    info |= {"family": family, "sd_scripts": str(checkout)}
    (run / "run.json").write_text(json.dumps(info))
    (run / "recipe.json").write_text(json.dumps({"name": f"{family}-standard", "family": family}))
    (run / "status.json").write_text(json.dumps({"state": "succeeded"}))
    return run


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
    """Both checkpoints in one sheet; the final checkpoint's images equal the first test's."""
    root, _ = gaze_generate(
        str(lora_run), "--checkpoint", "all", "sampler=euler", "cfg=7", "negative=on,off", "steps=3"
    )
    index = check_complete(root, images=4, rows=1, cols=4)
    assert [s["checkpoint"] for s in index["sources"]] == ["step1", "final"]
    first = sorted(p for p in (lora_run / "generations").iterdir() if p != root)[0]
    for entry in index["images"]:
        if entry["checkpoint"] == "final":
            again = Image.open(root / entry["file"]).tobytes()
            assert again == Image.open(first / entry["file"]).tobytes(), entry["file"]
