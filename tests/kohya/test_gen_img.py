"""gen_img.py's command line: long prompts (max_embeddings_multiples) and which LoRA loads on which base."""

from __future__ import annotations

from pathlib import Path

import pytest

from wrapper.kohya.gen_img import CHUNK_TOKENS, embeddings_multiples, gen_img_argv, lora_base_problem


@pytest.mark.parametrize(("tokens", "chunks"), [(0, 1), (75, 1), (76, 2), (150, 2), (220, 3), (226, 4)])
def test_chunks_keep_every_token(tokens, chunks):
    assert embeddings_multiples(tokens) == chunks and chunks * CHUNK_TOKENS >= tokens


def argv(**extra):
    return gen_img_argv(python="py", checkout=Path("/sd"), model=Path("/m"), family="sd15", lora=Path("/l"),
                        sampler="euler", prompts_file=Path("/p.txt"), outdir=Path("/o"), size=128, **extra)


def test_long_prompts_raise_max_embeddings_multiples_and_short_ones_leave_the_default():
    assert "--max_embeddings_multiples" not in argv()
    long = argv(max_embeddings_multiples=3)
    assert long[long.index("--max_embeddings_multiples") + 1] == "3"


def test_a_lora_loads_only_on_its_own_architecture():
    assert lora_base_problem("sd15", "sd15") is None and lora_base_problem("sdxl", "sdxl") is None
    on_sdxl = lora_base_problem("sd15", "sdxl")
    assert "size mismatch" in on_sdxl and "convert_diffusers_to_sai_if_needed" in on_sdxl and "2048" in on_sdxl
    on_sd15 = lora_base_problem("sdxl", "sd15")
    assert "silently render the bare base model" in on_sd15
    assert "size mismatch" in lora_base_problem("sd15", "sd2")
