"""Tiny versions of the baselines that train in minutes on a CPU: the demo and the real-trainer tests.

They keep every mechanism of their baseline (cropping, buckets, sampling, saving states) and only
shrink what costs time: 128-px images, 4 steps, 2 sampling steps, no data-loader workers.
"""

from __future__ import annotations

from recipes.standard import NEGATIVE, PROMPTS, SD15_STANDARD, SDXL_STANDARD
from wrapper.recipe import Recipe, SamplePrompt, evolve

SMOKE_PROMPTS = (SamplePrompt(prompt=PROMPTS[0], negative=NEGATIVE, width=128, height=128, seed=1),)


def _smoke(base: Recipe, name: str, **training: object) -> Recipe:
    recipe = evolve(
        base,
        prep={"portrait": (128, 192), "landscape": (192, 128)},
        data={"resolution": (128, 192), "buckets": {"min_reso": 64, "max_reso": 256}},
        training={
            "max_train_steps": 4,
            "save_every_n_steps": 2,
            "max_data_loader_n_workers": 0,
            "persistent_data_loader_workers": False,
            **training,
        },
        optimizer={"warmup_steps": 0},
        network={"dim": 4, "alpha": 2.0},
        sampling={"prompts": SMOKE_PROMPTS, "steps": 2, "every_n_steps": 2, "sampler": "euler"},
    )
    return recipe.replace(
        name=name,
        description=f"""{base.name} shrunk to run in minutes on a CPU (demo and tests).

    make target: `make demo` (sd15-smoke) or `make {name}`
    - 128x192 / 192x128 crops, buckets 64..256, 4 steps, a LoRA and a state every 2 steps,
      one sample (euler, 2 steps) every 2 steps, dim 4.
    """,
    )


# fp32 for SD1.5 on a CPU; SDXL keeps bf16 (full_bf16 halves its 2.6 B-parameter U-Net).
SD15_SMOKE = _smoke(SD15_STANDARD, "sd15-smoke", mixed_precision="no")
SDXL_SMOKE = _smoke(SDXL_STANDARD, "sdxl-smoke", mixed_precision="bf16", full_bf16=True)

SMOKES = (SD15_SMOKE, SDXL_SMOKE)
