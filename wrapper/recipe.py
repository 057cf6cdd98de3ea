"""The Recipe model: everything one training run needs, as immutable values, and its value checks.

A recipe states *what* is trained. Machine paths (dataset, checkpoints) never live in a recipe:
they come from settings at run time (wrapper.settings).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from wrapper.errors import ConfigError, RecipeError, collect
from wrapper.kohya.samplers import resolve_sampler

Family = Literal["sd15", "sdxl"]
PrepMode = Literal["crop-orientation", "uncropped", "stretch"]
Precision = Literal["no", "fp16", "bf16"]
SavePrecision = Literal["float", "fp16", "bf16"]
Attention = Literal["auto", "sdpa", "xformers", "mem_eff", "none"]
Size = tuple[int, int]  # (width, height)

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
    caption_tag_dropout_rate: float = 0.0
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


def _positive(problems: list[str], where: str, value: float | int | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append(f"{where} = {value!r}: expected a finite number")
    elif value < 0 or (value == 0 and not allow_zero):
        problems.append(f"{where} = {value!r}: expected a number {'>= 0' if allow_zero else '> 0'}")


def _fraction(problems: list[str], where: str, value: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        problems.append(f"{where} = {value!r}: expected a fraction between 0 and 1")


def _size(problems: list[str], where: str, size: Any) -> None:
    ok = isinstance(size, tuple) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)
    if not ok:
        problems.append(f"{where} = {size!r}: expected (width, height) as two positive integers")


def _typed_fields(problems: list[str], group_name: str, group: Any) -> None:
    """Check Literal-typed fields and plain bool/int/str types of one group."""
    hints = {f.name: f.type for f in dataclasses.fields(group)}
    for name, hint in hints.items():
        value = getattr(group, name)
        literal = {
            "Family": Family,
            "PrepMode": PrepMode,
            "Precision": Precision,
            "SavePrecision": SavePrecision,
            "Attention": Attention,
        }.get(str(hint))
        if literal is not None and value not in get_args(literal):
            choices = ", ".join(map(repr, get_args(literal)))
            problems.append(f"{group_name}.{name} = {value!r}: expected one of {choices}")
        elif hint == "bool" and not isinstance(value, bool):
            problems.append(f"{group_name}.{name} = {value!r}: expected true or false")
        elif hint == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append(f"{group_name}.{name} = {value!r}: expected an integer")
        elif hint == "str" and not isinstance(value, str):
            problems.append(f"{group_name}.{name} = {value!r}: expected a string")
        elif hint == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
            problems.append(f"{group_name}.{name} = {value!r}: expected a number")


def recipe_problems(recipe: Recipe) -> list[str]:
    """Every problem with a recipe's own values (no files, no sd-scripts needed)."""
    problems: list[str] = []
    for name in ("training", "data", "prep", "network", "optimizer", "sampling"):
        _typed_fields(problems, name, getattr(recipe, name))
    _typed_fields(problems, "data.buckets", recipe.data.buckets)
    _typed_fields(problems, "recipe", recipe)
    if problems:
        return problems  # value checks below assume the types are right

    t, d, o, n, p, s = (
        recipe.training,
        recipe.data,
        recipe.optimizer,
        recipe.network,
        recipe.prep,
        recipe.sampling,
    )
    _positive(problems, "training.max_train_steps", t.max_train_steps)
    _positive(problems, "training.batch_size", t.batch_size)
    _positive(problems, "training.gradient_accumulation_steps", t.gradient_accumulation_steps)
    _positive(problems, "training.save_every_n_steps", t.save_every_n_steps)
    _positive(problems, "training.max_data_loader_n_workers", t.max_data_loader_n_workers, allow_zero=True)
    _positive(problems, "optimizer.unet_lr", o.unet_lr)
    _positive(problems, "optimizer.text_encoder_lr", o.text_encoder_lr)
    _positive(problems, "optimizer.warmup_steps", o.warmup_steps, allow_zero=True)
    _positive(problems, "optimizer.max_grad_norm", o.max_grad_norm, allow_zero=True)
    _positive(problems, "network.dim", n.dim)
    _positive(problems, "network.alpha", n.alpha)
    _positive(problems, "data.num_repeats", d.num_repeats)
    _positive(problems, "data.keep_tokens", d.keep_tokens, allow_zero=True)
    _positive(problems, "training.noise_offset", t.noise_offset, allow_zero=True)
    _positive(problems, "training.min_snr_gamma", t.min_snr_gamma)
    _positive(problems, "sampling.steps", s.steps)
    _positive(problems, "sampling.every_n_steps", s.every_n_steps)
    _size(problems, "data.resolution", d.resolution)
    _size(problems, "prep.portrait", p.portrait)
    _size(problems, "prep.landscape", p.landscape)
    for where, value in (("prep.square", p.square), ("prep.stretch_to", p.stretch_to)):
        if value is not None:
            _size(problems, where, value)
    for where, value in (
        ("data.caption_dropout_rate", d.caption_dropout_rate),
        ("data.caption_tag_dropout_rate", d.caption_tag_dropout_rate),
        ("data.validation_split", d.validation_split),
        ("prep.jpeg_fraction", p.jpeg_fraction),
    ):
        _fraction(problems, where, value)
    if n.dropout is not None:
        _fraction(problems, "network.dropout", n.dropout)
    if not 1 <= p.jpeg_quality <= 95:
        problems.append(f"prep.jpeg_quality = {p.jpeg_quality}: expected 1..95")
    if not 0 < s.cfg <= 100:
        problems.append(f"sampling.cfg = {s.cfg!r}: expected a number in (0, 100]")
    try:
        resolve_sampler(s.sampler)
    except ConfigError as exc:
        problems.append(f"sampling.sampler: {exc}")
    if p.mode == "stretch" and p.stretch_to is None:
        problems.append("prep.stretch_to: mode 'stretch' needs the fixed size to stretch to")
    for a in (*n.args, *o.args):
        if "=" not in a:
            problems.append(f"argument {a!r} in network.args/optimizer.args: expected 'key=value'")
    if not recipe.name or any(c.isspace() or c in "/\\" for c in recipe.name):
        problems.append(f"name = {recipe.name!r}: expected a non-empty name without spaces or slashes")
    return problems


def validate(recipe: Recipe) -> Recipe:
    """Return the recipe unchanged, or raise one RecipeError that lists every problem."""
    collect(recipe_problems(recipe), RecipeError, f"recipe {recipe.name!r} has invalid values")
    return recipe
