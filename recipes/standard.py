"""The baseline experiments of the research log: what a "normal" fashion LoRA looks like.

The log fixes only some numbers (crop sizes, SDXL max resolution and 8000 steps, SD1.5 dim 128,
the sampler/steps/CFG used to look at results). Every other value is a well-known default of the
kohya-ss LoRA recipes, chosen and explained here so that the glitch runs differ from these in one
named way each.
"""

from __future__ import annotations

from wrapper.recipe import Buckets, Data, Network, Optimizer, Prep, Recipe, SamplePrompt, Sampling, Training, evolve

#: Example prompts of the research log, each sampled with and without its negative prompt.
NEGATIVE = "lowres, bad anatomy, bad hands, extra fingers, deformed, blurry, watermark, text"
PROMPTS = (
    "editorial fashion photograph, model in an oversized wool coat, studio light, full body",
    "street style photo, woman in a pleated silk skirt and leather boots, city at dusk",
    "runway photograph, model in a sculptural white gown, dramatic side lighting",
)


def sample_prompts(width: int, height: int) -> tuple[SamplePrompt, ...]:
    """Every log prompt twice: with the negative prompt and without (seeded, so comparable)."""
    return tuple(
        SamplePrompt(prompt=p, negative=neg, width=width, height=height, seed=1000 + i)
        for i, p in enumerate(PROMPTS)
        for neg in (NEGATIVE, "")
    )


SDXL_STANDARD = Recipe(
    name="sdxl-standard",
    family="sdxl",
    description="""SDXL LoRA on orientation-cropped photos: the reference every SDXL glitch is compared to.

    make target: `make sdxl-standard`
    - prep: portrait 832x1216 / landscape 1216x832 centre crops (the log); both are SDXL training
      buckets of ~1 MP, so nothing is rescaled again by sd-scripts.
    - resolution 832x1216 with buckets on and max_bucket_reso 1216 ("max resolution set to the
      same"): the two crop shapes land in exactly their own buckets.
    - 8000 steps (the log), a LoRA saved every 1000 steps to watch glitches emerge.
    - U-Net only, dim 32 / alpha 16, AdamW at 1e-4 with cosine decay and 100 warm-up steps:
      kohya's documented SDXL LoRA starting point; the frozen text encoders let sd-scripts cache
      their outputs.
    - bf16 mixed precision, VAE kept in fp32 (the SDXL 1.0 VAE overflows in half precision);
      gradient checkpointing only where memory is short (under 40 GiB of GPU memory): a 24 GB card
      needs it at 1 MP, but on an H200 it made steps 1.2x slower than even sd-scripts' fp32
      defaults without it (bench/train.md).
    - samples: the log's prompts with and without the negative prompt, DPM++ 2M, 20 steps, CFG 7.
    """,
    prep=Prep(mode="crop-orientation", portrait=(832, 1216), landscape=(1216, 832)),
    network=Network(dim=32, alpha=16.0),
    optimizer=Optimizer(unet_lr=1e-4, text_encoder_lr=5e-5, scheduler="cosine", warmup_steps=100),
    training=Training(
        max_train_steps=8000,
        save_every_n_steps=1000,
        mixed_precision="bf16",
        no_half_vae=True,
    ),
    data=Data(
        resolution=(832, 1216),
        buckets=Buckets(enabled=True, min_reso=512, max_reso=1216, reso_steps=64),
    ),
    sampling=Sampling(
        prompts=sample_prompts(832, 1216), sampler="dpm++2m", steps=20, cfg=7.0, every_n_steps=1000
    ),
)

SD15_STANDARD = Recipe(
    name="sd15-standard",
    family="sd15",
    description="""SD1.5 LoRA on orientation-cropped photos at SD1.5's own scale.

    make target: `make sd15-standard`
    - prep: the same 2:3 / 3:2 centre crops as sdxl-standard, scaled to SD1.5's 512-px family
      (portrait 512x768, landscape 768x512); resolution 512x768, max_bucket_reso 768.
    - network_dim 128 (the log), alpha 64 (half the dim, the usual kohya convention).
    - U-Net only, AdamW at 1e-4 with cosine decay and 100 warm-up steps (kohya's LoRA defaults).
    - 3000 steps: the log gives none for SD1.5; this sits between its ~1200-step tweak and the
      5000 steps past which it calls a run over-trained. A LoRA is saved every 500 steps.
    - bf16 mixed precision; samples as in sdxl-standard at 512x768.
    """,
    prep=Prep(mode="crop-orientation", portrait=(512, 768), landscape=(768, 512)),
    network=Network(dim=128, alpha=64.0),
    optimizer=Optimizer(unet_lr=1e-4, text_encoder_lr=5e-5, scheduler="cosine", warmup_steps=100),
    training=Training(max_train_steps=3000, save_every_n_steps=500, mixed_precision="bf16"),
    data=Data(
        resolution=(512, 768),
        buckets=Buckets(enabled=True, min_reso=256, max_reso=768, reso_steps=64),
    ),
    sampling=Sampling(
        prompts=sample_prompts(512, 768), sampler="dpm++2m", steps=20, cfg=7.0, every_n_steps=500
    ),
)

SD15_UNCROPPED = evolve(
    SD15_STANDARD,
    prep={"mode": "uncropped"},
    data={"buckets": {"max_reso": 1024}},
).replace(
    name="sd15-uncropped",
    description="""sd15-standard on the photos as they are: no cropping, varied framing.

    make target: `make sd15-uncropped`
    - prep only normalises format and orientation; sd-scripts' aspect-ratio buckets (64-px steps,
      up to 1024 px on a side, the same 512x768 pixel budget) take every framing as it comes.
    - everything else as sd15-standard, so the two runs differ in framing alone.
    """,
)

BASELINES = (SDXL_STANDARD, SD15_STANDARD, SD15_UNCROPPED)
