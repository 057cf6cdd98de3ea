"""Recipe -> the three files sd-scripts reads: dataset config, training-arguments file, sample prompts.

Pure functions: the same recipe and places always give the same dicts and text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wrapper.errors import ConfigError, collect
from wrapper.kohya.prompt_lines import format_line, text_problems
from wrapper.kohya.samplers import resolve_sampler
from wrapper.kohya.validation import every_n_steps
from wrapper.recipe import Recipe

SCRIPTS = {"sd15": "train_network.py", "sdxl": "sdxl_train_network.py"}
#: CLIP tokens of a sample prompt the trainer reads: train_util.sample_image_inference calls the
#: long-prompt pipeline (library/lpw_stable_diffusion.py, sdxl_lpw_stable_diffusion.py) without
#: max_embeddings_multiples, so its default of 3 chunks of 75 applies, whatever max_token_length says
#: (that one sets how captions are read in training); the rest is cut with a "Prompt was truncated" warning.
SAMPLE_MAX_TOKENS = 225
ATTENTION_FLAGS = {"sdpa": "sdpa", "xformers": "xformers", "mem_eff": "mem_eff_attn"}


@dataclass(frozen=True, kw_only=True)
class Places:
    """Where one rendering points: machine paths, decided by the caller, never by a recipe."""

    image_dir: Path
    model: Path
    output_dir: Path
    logging_dir: Path
    sample_prompts: Path
    output_name: str
    tokenizer_cache_dir: Path | None = None
    more_image_dirs: tuple[Path, ...] = ()  # sub-folders with images: sd-scripts reads one folder per subset
    attention: str = "sdpa"  # the resolved backend: sdpa, xformers, mem_eff or none
    gradient_checkpointing: bool | None = None  # the device's answer for recipes that leave it open
    trackers: tuple[str, ...] = ("tensorboard",)  # settings.TRACKERS: tensorboard, and wandb when asked for
    run_name: str = ""  # the run folder's name: the W&B run's


def script_for(recipe: Recipe) -> str:
    return SCRIPTS[recipe.family]


def latents_cacheable(recipe: Recipe) -> bool:
    return not (recipe.data.random_crop or recipe.data.color_aug)


def text_encoder_outputs_cacheable(recipe: Recipe) -> bool:
    d = recipe.data
    return (
        recipe.family == "sdxl"
        and not recipe.training.train_text_encoder
        and not (d.shuffle_caption or d.caption_dropout_rate or d.caption_tag_dropout_rate)
    )


def _auto(explicit: bool | None, possible: bool) -> bool:
    return possible if explicit is None else explicit


def render_dataset(recipe: Recipe, places: Places) -> dict[str, Any]:
    """The dataset config: one DreamBooth-style dataset with one subset (the prepared images)."""
    d, b = recipe.data, recipe.data.buckets
    dataset: dict[str, Any] = {
        "resolution": list(d.resolution),
        "batch_size": recipe.training.batch_size,
        "enable_bucket": b.enabled,
    }
    if b.enabled:
        dataset |= {
            "min_bucket_reso": b.min_reso,
            "max_bucket_reso": b.max_reso,
            "bucket_reso_steps": b.reso_steps,
            "bucket_no_upscale": b.no_upscale,
        }
    if d.validation_split > 0:
        dataset |= {"validation_split": float(d.validation_split), "validation_seed": d.validation_seed}
    subset = {
        "num_repeats": d.num_repeats,
        "caption_extension": d.caption_extension,
        "shuffle_caption": d.shuffle_caption,
        "keep_tokens": d.keep_tokens,
        "random_crop": d.random_crop,
        "flip_aug": d.flip,
        "color_aug": d.color_aug,
        "caption_dropout_rate": float(d.caption_dropout_rate),
        "caption_tag_dropout_rate": float(d.caption_tag_dropout_rate),
        "caption_separator": d.caption_separator,  # what shuffling, keep_tokens and part dropout split at
    }
    folders = (places.image_dir, *places.more_image_dirs)
    dataset["subsets"] = [{"image_dir": str(folder), **subset} for folder in folders]
    return {"general": {}, "datasets": [dataset]}


def _deliberate_note(recipe: Recipe, model_family: str | None = None) -> str:
    parts = [f"gaze recipe {recipe.name}"]
    if recipe.glitches:
        parts.append("deliberate glitches: " + ", ".join(recipe.glitches))
    if recipe.base_model != "default":
        parts.append(f"deliberately mismatched base model {recipe.base_model!r}")
    return "; ".join(parts)


def render_arguments(recipe: Recipe, places: Places, dataset_config: Path) -> dict[str, dict[str, Any]]:
    """The training-arguments file, grouped into tables (sd-scripts flattens one level)."""
    t, o, n, s = recipe.training, recipe.optimizer, recipe.network, recipe.sampling
    model: dict[str, Any] = {"pretrained_model_name_or_path": str(places.model)}
    if places.tokenizer_cache_dir is not None:
        model["tokenizer_cache_dir"] = str(places.tokenizer_cache_dir)
    for flag in ("v2", "v_parameterization", "no_half_vae"):
        if getattr(t, flag):
            model[flag] = True

    network: dict[str, Any] = {
        "network_module": n.module,
        "network_dim": n.dim,
        "network_alpha": float(n.alpha),
        "network_train_unet_only": not t.train_text_encoder,
    }
    if n.dropout is not None:
        network["network_dropout"] = float(n.dropout)
    if n.args:
        network["network_args"] = list(n.args)

    optimizer: dict[str, Any] = {
        "optimizer_type": o.type,
        "learning_rate": float(o.unet_lr),
        "unet_lr": float(o.unet_lr),
        "lr_scheduler": o.scheduler,
        "lr_warmup_steps": o.warmup_steps,
        "max_grad_norm": float(o.max_grad_norm),
    }
    if t.train_text_encoder:
        optimizer["text_encoder_lr"] = float(o.text_encoder_lr)
    if o.args:
        optimizer["optimizer_args"] = list(o.args)

    training: dict[str, Any] = {
        "max_train_steps": t.max_train_steps,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "seed": t.seed,
        "mixed_precision": t.mixed_precision,
        "gradient_checkpointing": _auto(
            t.gradient_checkpointing,
            places.gradient_checkpointing if places.gradient_checkpointing is not None else recipe.family == "sdxl",
        ),
        "cache_latents": _auto(t.cache_latents, latents_cacheable(recipe)),
        "max_data_loader_n_workers": t.max_data_loader_n_workers,
        "persistent_data_loader_workers": t.persistent_data_loader_workers,
    }
    if places.attention in ATTENTION_FLAGS:
        training[ATTENTION_FLAGS[places.attention]] = True
    if t.full_bf16:
        training["full_bf16"] = True
    if recipe.family == "sdxl":
        training["cache_text_encoder_outputs"] = _auto(
            t.cache_text_encoder_outputs, text_encoder_outputs_cacheable(recipe)
        )
    if t.max_token_length != 75:
        training["max_token_length"] = t.max_token_length
    for key in ("noise_offset", "min_snr_gamma"):
        if getattr(t, key) is not None:
            training[key] = float(getattr(t, key))
    if t.clip_skip is not None:
        training["clip_skip"] = t.clip_skip
    if recipe.data.validation_split > 0:
        training["validate_every_n_steps"] = every_n_steps(t.validate_every_n_steps, t.max_train_steps)

    saving: dict[str, Any] = {
        "output_dir": str(places.output_dir),
        "output_name": places.output_name,
        "save_model_as": "safetensors",
        "save_precision": t.save_precision,
        "save_state": t.save_state,
        "metadata_title": recipe.name,
        "training_comment": _deliberate_note(recipe),
    }
    if t.save_every_n_steps is not None:
        saving["save_every_n_steps"] = t.save_every_n_steps

    tables: dict[str, dict[str, Any]] = {
        "model": model,
        "network": network,
        "optimizer": optimizer,
        "training": training,
        "saving": saving,
        "logging": logging_arguments(recipe, places),
        "dataset": {"dataset_config": str(dataset_config)},
    }
    if s.prompts:  # without every_n_steps the file is still there for sample_every_n_epochs in extra_args
        tables["sampling"] = {"sample_prompts": str(places.sample_prompts)}
        if s.every_n_steps:
            tables["sampling"]["sample_every_n_steps"] = s.every_n_steps
        tables["sampling"]["sample_sampler"] = resolve_sampler(s.sampler)[1]
    if recipe.extra_args:
        tables["extra"] = dict(recipe.extra_args)
    return tables


def tracker_project(recipe: Recipe) -> str:
    """The project a run's trackers file it under: its baseline, so a baseline and its glitches sit side by side."""
    return recipe.baseline or recipe.name


def logging_arguments(recipe: Recipe, places: Places) -> dict[str, Any]:
    """TensorBoard always (gaze's reports read it); with wandb, log_with "all", the W&B run named after the
    run folder in the project tracker_project names. The API key is never here: wandb reads WANDB_API_KEY.
    Plain log lines: rich wraps them at the terminal width, which breaks log reading."""
    trackers = tracker_arguments(places.trackers, places.run_name or places.output_name, tracker_project(recipe))
    return {"logging_dir": str(places.logging_dir), **trackers, "console_log_simple": True}


TRACKER_ARGUMENTS = ("log_with", "wandb_run_name", "log_tracker_name")


def tracker_arguments(trackers: tuple[str, ...] | list[str], run_name: str, project: str) -> dict[str, str]:
    """sd-scripts' tracker arguments: "all" with wandb, since TensorBoard stays on (`tensorboard` alone
    would be the only other choice)."""
    if "wandb" not in trackers:
        return {"log_with": "tensorboard"}
    return {"log_with": "all", "wandb_run_name": run_name, "log_tracker_name": project}


def render_prompts(recipe: Recipe) -> str:
    """sample_prompts.txt: one line per prompt with its negative prompt, size, seed, CFG, steps, sampler."""
    s = recipe.sampling
    problems: list[str] = []
    lines = ["# sample prompts of recipe " + recipe.name.replace("\n", " ")]
    for i, p in enumerate(s.prompts):
        where = f"sampling.prompts[{i}]"
        problems += [f"{where}.prompt {p.prompt!r} {q.message}" for q in text_problems(p.prompt)]
        if p.negative:
            found = text_problems(p.negative, negative=True)
            problems += [f"{where}.negative {p.negative!r} {q.message}" for q in found]
        options: dict[str, str | int | float] = {"n": p.negative} if p.negative else {}
        options |= {"w": p.width or recipe.data.resolution[0], "h": p.height or recipe.data.resolution[1]}
        if p.seed is not None:
            options["d"] = p.seed
        options |= {"l": float(s.cfg), "s": s.steps, "ss": resolve_sampler(s.sampler)[1]}
        lines.append(format_line(p.prompt, options))
    collect(problems, ConfigError, f"recipe {recipe.name!r}: sample prompts cannot be written exactly")
    return "\n".join(lines) + "\n"
