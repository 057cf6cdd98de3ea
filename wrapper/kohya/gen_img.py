"""sd-scripts' inference script gen_img.py: sampler names, prompt-file lines and the argv.

gen_img.py takes the sampler, model and LoRA once per process and everything else per prompt
line (`--n` negative prompt, `--s` steps, `--l` CFG scale, `--d` seed, `--am` LoRA multiplier,
`--f` output file name), so one process renders a whole grid for one checkpoint and sampler.
"""

from __future__ import annotations

import math
from pathlib import Path

from wrapper.errors import ConfigError
from wrapper.kohya.models import CHECKPOINT_FAMILIES
from wrapper.kohya.prompt_lines import format_line
from wrapper.kohya.samplers import SD_SCRIPTS_SAMPLERS

# gen_img.py's `--sampler` choices (setup_parser); anything else would be rejected by argparse,
# while the training-time sampler silently falls back to DDIM.
PRECISIONS = ("fp32", "fp16", "bf16")

#: CLIP content tokens per text-encoder pass (77 with BOS and EOS). gen_img.py reads a prompt in
#: `--max_embeddings_multiples` such chunks (default 1: it cuts at 75 tokens and logs "Prompt was
#: truncated"); get_weighted_text_embeddings encodes each chunk on its own, so any number works and
#: a batch only pays for the chunks its longest prompt needs.
CHUNK_TOKENS = 75


def embeddings_multiples(tokens: int) -> int:
    """The `--max_embeddings_multiples` that keeps `tokens` CLIP tokens whole (1 for up to 75)."""
    return max(1, math.ceil(tokens / CHUNK_TOKENS))


def lora_base_problem(lora_family: str, base_family: str) -> str | None:
    """Why gen_img.py cannot apply a LoRA trained on one model family to a base of another, or None.

    networks.lora create_network_from_weights builds one module per layer of the *base* whose name
    the LoRA file has; load_state_dict(strict=False) then skips names it does not know but fails on
    a shape that differs. What follows for each pair is what sd-scripts v0.10.1 does.
    """
    if lora_family == base_family:
        return None
    lora, base = CHECKPOINT_FAMILIES[lora_family], CHECKPOINT_FAMILIES[base_family]
    if base_family == "sdxl":
        return (f"sd-scripts cannot apply an {lora} LoRA to an {base} base: for SDXL gen_img.py renames the "
                "LoRA's U-Net keys from Diffusers' down_blocks/up_blocks to SDXL's input_blocks/output_blocks "
                "(networks/lora.py convert_diffusers_to_sai_if_needed), where its cross-attention layers, made for "
                f"{'768' if lora_family == 'sd15' else '1024'}-wide text embeddings, meet SDXL's 2048-wide ones"
                f"{' and its 1x1-convolution projections SDXL linear ones' if lora_family == 'sd15' else ''}: loading "
                "stops with a size mismatch, and its text-encoder keys (lora_te_*) match neither of SDXL's encoders "
                "(lora_te1_*, lora_te2_*)")
    if lora_family == "sdxl":
        return (f"sd-scripts cannot apply an {lora} LoRA to an {base} base: none of its layer names "
                f"(lora_unet_input_blocks_*, lora_te1_*, lora_te2_*) exists in an {base} model, so gen_img.py "
                "builds no LoRA module at all and would silently render the bare base model")
    return (f"sd-scripts cannot apply an {lora} LoRA to an {base} base: the layer names are the same, but the "
            "text encoders differ (CLIP-L, 768 wide, in SD1.x; OpenCLIP-H, 1024 wide, in SD2.x) and so do the "
            "U-Net's cross-attention inputs: loading stops with a size mismatch")


def prompt_line(
    prompt: str, negative: str | None, *, steps: int, cfg: float, seed: int, weight: float, filename: str
) -> str:
    """One gen_img.py `--from_file` line rendering exactly one image into `filename`.

    The prompt and negative prompt must already be free of `prompt_lines.text_problems` for gen_img
    (prompts.py checks that); the prompt travels as it is, a space at its end included (gen_img.py
    keeps it: options follow). An empty negative prompt is left out, which gen_img.py reads as "".
    """
    options: dict[str, str | int | float] = {"n": negative.strip()} if negative else {}
    options |= {"s": steps, "l": float(cfg), "d": seed, "am": float(weight), "f": filename}
    return format_line(prompt, options)


def gen_img_argv(
    *,
    python: str,
    checkout: Path,
    model: Path,
    family: str,
    lora: Path,
    sampler: str,
    prompts_file: Path,
    outdir: Path,
    size: int,
    precision: str = "fp32",
    tokenizer_cache_dir: Path | None = None,
    batch_size: int = 1,
    max_embeddings_multiples: int = 1,
) -> list[str]:
    """The argv of one gen_img.py process: one model, one LoRA, one sampler, a file of prompt lines.

    `max_embeddings_multiples`: chunks of 75 CLIP tokens per prompt (`embeddings_multiples` of the
    longest prompt or negative prompt); above 1 it is passed on, else gen_img.py cuts at 75.
    """
    if sampler not in SD_SCRIPTS_SAMPLERS:
        raise ConfigError(f"gen_img.py sampler {sampler!r} is not one of {', '.join(SD_SCRIPTS_SAMPLERS)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"option --precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    argv = [python, str(checkout / "gen_img.py"), "--sdxl" if family == "sdxl" else "--v1"]
    argv += ["--ckpt", str(model), "--outdir", str(outdir), "--from_file", str(prompts_file)]
    argv += ["--sampler", sampler, "--W", str(size), "--H", str(size), "--batch_size", str(batch_size)]
    argv += ["--images_per_prompt", "1", "--n_iter", "1", "--sdpa"]
    argv += ["--network_module", "networks.lora", "--network_weights", str(lora), "--network_mul", "1.0"]
    if precision != "fp32":
        argv += [f"--{precision}", "--no_half_vae"]  # a half-precision VAE can decode to NaN (black)
    if tokenizer_cache_dir is not None:
        argv += ["--tokenizer_cache_dir", str(tokenizer_cache_dir)]
    if max_embeddings_multiples > 1:
        argv += ["--max_embeddings_multiples", str(max_embeddings_multiples)]
    return argv
