"""The baseline experiments of the research log: what a "normal" fashion LoRA looks like.

The log fixes only some numbers (crop sizes, SDXL max resolution and 8000 steps, network_dim 128,
the prompts and the sampler/steps/CFG used to look at results). Every other value is a well-known
default of the kohya-ss LoRA recipes, chosen and explained here so that the glitch runs differ from
these in one named way each. Each description marks what is the log's and what is chosen.
"""

from __future__ import annotations

from wrapper.recipe import Buckets, Data, Network, Optimizer, Prep, Recipe, SamplePrompt, Sampling, Training, evolve

#: The research log's prompts, verbatim (typographic apostrophes, the double space and the trailing
#: space included; CLIP's tokenizer squeezes white space, so those change no token). The first is a
#: caption of the training data used as a prompt, the second was written from an image. They are
#: 220 and 129 CLIP tokens: sd-scripts' sampling pipeline reads up to 225 (README: long prompts).
CAPTION_PROMPT = (
    "A young, white woman with heavily teased platinum-blonde hair kneels on an office chair, her body angled "
    "provocatively towards the camera. She wears a beige t-shirt and extremely a short metallic bronze skirt, "
    "with thigh-high brown boots style sandals. The background is a dark, nondescript studio space, spotlighted "
    "from above, casting hard shadows. Her exaggerated hairstyle dominates the frame, styled in a way reminiscent "
    "of 1980s glamour tropes. Her makeup is heavy, particularly around the eyes and mouth. The t-shirt’s "
    "plainness contrasts with the shorts’ high shine, making her body the focal point through both exposure "
    "and contrast. The lighting and styling play with high sexualisation, inviting visual consumption of the "
    "model’s youthful body. The pose and styling hark back to earlier pin-up visual languages while "
    "repackaging them for fashion editorial. This image draws on retro-sexual archetypes, placing "
    "hyper-femininity in an ironic, object-centric frame.  The straight hair, youthful and toned skin, perfect "
    "lean body align with Eurocentric ideals. "
)
IMAGE_PROMPT = (
    "A tall, elegant fashion model stands confidently on a platform over a reflective lake, surrounded by "
    "striking beige rock formations under a clear blue sky. She wears a sculptural, strapless black mini dress "
    "with dramatic ruched fabric and a bold, plunging neckline that accentuates her silhouette. Her long legs "
    "are emphasized by sheer black tights and high heels. The lighting is sharp and natural, casting crisp "
    "shadows and reflecting the mountainous landscape in the still water. Her hair is slicked back and wet, "
    "enhancing the modern, sleek aesthetic. Editorial fashion photography, minimalist composition, natural "
    "textures, high contrast, confident and empowering mood. "
)
NEGATIVE = (
    "blurry, unnatural lighting, low resolution, extra limbs, distorted anatomy, unrealistic fabric, poor "
    "reflections, cartoonish textures, unflattering pose, bad proportions, washed out colors"
)
PROMPTS = (CAPTION_PROMPT, IMAGE_PROMPT)


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
    From the log:
    - prep: portrait 832x1216 / landscape 1216x832 centre crops; both are SDXL training buckets of
      ~1 MP, so nothing is rescaled again by sd-scripts.
    - max resolution set to the same: resolution 832x1216 with buckets on and max_bucket_reso 1216,
      so the two crop shapes land in exactly their own buckets.
    - 8000 steps.
    - network_dim 128: the log's LoRA size (its dim tweak goes to 192); nothing in the log sets
      another for SDXL, so both baselines share it and differ in the base model alone.
    - samples: the log's two prompts with and without its negative prompt, DPM++ 2M, 20 steps,
      CFG 7.
    Chosen here:
    - alpha 64 (half the dim, the usual kohya convention); U-Net only; AdamW at 1e-4 with cosine
      decay and 100 warm-up steps (kohya's documented LoRA starting point); the frozen text
      encoders let sd-scripts cache their outputs.
    - a LoRA saved every 1000 steps, to watch glitches emerge; min_bucket_reso 512, 64-px steps.
    - bf16 mixed precision, VAE kept in fp32 (the SDXL 1.0 VAE overflows in half precision);
      gradient checkpointing only where memory is short (under 40 GiB of GPU memory): a 24 GB card
      needs it at 1 MP, but on an H200 it made steps 1.2x slower than even sd-scripts' fp32
      defaults without it (bench/train.md).
    """,
    prep=Prep(mode="crop-orientation", portrait=(832, 1216), landscape=(1216, 832)),
    network=Network(dim=128, alpha=64.0),
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
    From the log:
    - network_dim 128.
    - samples: the log's prompts with and without its negative prompt, DPM++ 2M, 20 steps, CFG 7.
    Chosen here:
    - the log's 2:3 / 3:2 centre crops (its sizes are SDXL's) scaled to SD1.5's 512-px family:
      portrait 512x768, landscape 768x512; resolution 512x768 and, following the log's "max
      resolution set to the same", max_bucket_reso 768.
    - alpha 64, U-Net only, AdamW at 1e-4 with cosine decay and 100 warm-up steps, as sdxl-standard.
    - 3000 steps: the log gives none for SD1.5; this sits between its ~1200-step tweak and the
      5000 steps past which it calls a run over-trained. A LoRA is saved every 500 steps.
    - bf16 mixed precision.
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
