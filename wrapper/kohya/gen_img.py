"""sd-scripts' inference script gen_img.py: sampler names, prompt-file lines and the argv.

gen_img.py takes the sampler, model and LoRA once per process and everything else per prompt
line (`--n` negative prompt, `--s` steps, `--l` CFG scale, `--d` seed, `--am` LoRA multiplier,
`--f` output file name), so one process renders a whole grid for one checkpoint and sampler.
"""

from __future__ import annotations

from pathlib import Path

from wrapper.errors import ConfigError
from wrapper.kohya.prompt_lines import format_line
from wrapper.kohya.samplers import SD_SCRIPTS_SAMPLERS

# gen_img.py's `--sampler` choices (setup_parser); anything else would be rejected by argparse,
# while the training-time sampler silently falls back to DDIM.
PRECISIONS = ("fp32", "fp16", "bf16")


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
) -> list[str]:
    """The argv of one gen_img.py process: one model, one LoRA, one sampler, a file of prompt lines."""
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
    return argv
