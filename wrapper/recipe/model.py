"""The Recipe model: everything one training run needs, as immutable values, and its value checks.

A recipe states *what* is trained. Machine paths (dataset, checkpoints) never live in a recipe:
they come from settings at run time (wrapper.settings).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Family = Literal["sd15", "sdxl"]
PrepMode = Literal["crop-orientation", "uncropped", "stretch"]
Precision = Literal["no", "fp16", "bf16"]
SavePrecision = Literal["float", "fp16", "bf16"]
Attention = Literal["auto", "sdpa", "xformers", "mem_eff", "none"]
Size = tuple[int, int]  # (width, height)
MIN_SIDE, MAX_SIDE = 64, 8192  # the image sides gaze prepares and sd-scripts is asked to train at

FAMILIES: tuple[Family, ...] = get_args(Family)  # the model families a recipe can train

TOKEN_LENGTHS = (75, 150, 225)


@dataclass(frozen=True, kw_only=True)
class Prep:
    """How the source images are turned into the training images."""

    mode: PrepMode = "crop-orientation"
    portrait: Size = (832, 1216)
    landscape: Size = (1216, 832)
    square: Size | None = None  # None: square images get the portrait size
    stretch_to: Size | None = None  # the fixed size for mode "stretch"
    jpeg_fraction: float = 0.0  # share of images re-encoded as low-quality JPEG (a glitch)
    jpeg_quality: int = 10
    seed: int = 0
    caption_extension: str = ".txt"
    allow_empty_captions: bool = False


@dataclass(frozen=True, kw_only=True)
class Network:
    module: str = "networks.lora"
    dim: int = 32
    alpha: float = 16.0
    dropout: float | None = None
    args: tuple[str, ...] = ()  # sd-scripts network_args, "key=value"


@dataclass(frozen=True, kw_only=True)
class Optimizer:
    type: str = "AdamW"
    unet_lr: float = 1e-4
    text_encoder_lr: float = 5e-5
    scheduler: str = "cosine"
    warmup_steps: int = 0
    args: tuple[str, ...] = ()  # sd-scripts optimizer_args, "key=value" (values are Python literals)
    max_grad_norm: float = 1.0


@dataclass(frozen=True, kw_only=True)
class Training:
    max_train_steps: int
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    seed: int = 42
    train_text_encoder: bool = False
    mixed_precision: Precision = "bf16"
    full_bf16: bool = False
    save_precision: SavePrecision = "fp16"
    save_every_n_steps: int | None = None
    validate_every_n_steps: int | None = None  # None: about 20 evaluations a run (with data.validation_split)
    save_state: bool = True  # resumable: accelerate state saved with every LoRA
    gradient_checkpointing: bool | None = None  # None: on where memory is short (see training.py)
    attention: Attention = "auto"  # auto: xformers when installed and on a GPU, else torch SDPA
    cache_latents: bool | None = None  # None: on whenever no random crop / colour augmentation
    cache_text_encoder_outputs: bool | None = None  # SDXL; None: on whenever the text encoders are frozen
    max_data_loader_n_workers: int = 2
    persistent_data_loader_workers: bool = True
    max_token_length: int = 75
    noise_offset: float | None = None
    min_snr_gamma: float | None = None
    clip_skip: int | None = None
    v2: bool = False
    v_parameterization: bool = False
    no_half_vae: bool = False


@dataclass(frozen=True, kw_only=True)
class Buckets:
    enabled: bool = True
    min_reso: int = 256
    max_reso: int = 1024
    reso_steps: int = 64
    no_upscale: bool = False


@dataclass(frozen=True, kw_only=True)
class Data:
    resolution: Size
    buckets: Buckets = field(default_factory=Buckets)
    random_crop: bool = False
    flip: bool = False
    color_aug: bool = False
    caption_dropout_rate: float = 0.0
    caption_tag_dropout_rate: float = 0.0  # drop each part of a caption (split at caption_separator)
    caption_separator: str = ","  # what splits a caption into parts: "," for tags, ". " for sentences
    shuffle_caption: bool = False
    keep_tokens: int = 0
    caption_extension: str = ".txt"
    num_repeats: int = 1
    validation_split: float = 0.0
    validation_seed: int = 42


@dataclass(frozen=True, kw_only=True)
class SamplePrompt:
    prompt: str
    negative: str = ""
    width: int | None = None  # None: the recipe's resolution
    height: int | None = None
    seed: int | None = 1234


@dataclass(frozen=True, kw_only=True)
class Sampling:
    prompts: tuple[SamplePrompt, ...] = ()
    sampler: str = "dpm++2m"
    steps: int = 20
    cfg: float = 7.0
    every_n_steps: int | None = None


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    description: str
    family: Family
    training: Training
    data: Data
    prep: Prep = field(default_factory=Prep)
    network: Network = field(default_factory=Network)
    optimizer: Optimizer = field(default_factory=Optimizer)
    sampling: Sampling = field(default_factory=Sampling)
    base_model: str = "default"  # a model name from settings; "default" is the family's own checkpoint
    baseline: str = ""  # the built-in recipe this one was derived from ("" for a baseline)
    modifiers: tuple[str, ...] = ()  # modifier specs applied, in order
    glitches: tuple[str, ...] = ()  # the applied modifiers that are deliberate glitches
    extra_args: tuple[tuple[str, Any], ...] = ()  # any other sd-scripts argument, checked against its parser

    @property
    def checkpoint_name(self) -> str:
        """The settings name of the checkpoint this recipe trains on: its family's, or the mismatched one."""
        return self.family if self.base_model == "default" else self.base_model

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)


def evolve(recipe: Recipe, **groups: dict[str, Any]) -> Recipe:
    """Replace fields inside nested groups: evolve(r, training={"max_train_steps": 1200})."""
    changes: dict[str, Any] = {}
    for group, values in groups.items():
        current = getattr(recipe, group)
        if group == "data" and "buckets" in values and isinstance(values["buckets"], dict):
            values = {**values, "buckets": dataclasses.replace(current.buckets, **values["buckets"])}
        changes[group] = dataclasses.replace(current, **values)
    return dataclasses.replace(recipe, **changes)
