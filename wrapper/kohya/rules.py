"""Cross-field rules that sd-scripts only enforces at run time (or silently gets wrong).

Each rule names the sd-scripts behaviour it stands for, so a config fails here, in a second,
instead of after minutes of model loading.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from wrapper.errors import ConfigError, did_you_mean
from wrapper.kohya.render import ATTENTION_FLAGS
from wrapper.kohya.samplers import resolve_sampler
from wrapper.recipe import Network, Optimizer, Recipe, Training

# transformers.SchedulerType values plus sd-scripts' own additions (train_util.get_scheduler_fix)
SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay", "piecewise_constant",
)
OPTIMIZERS = (
    "AdamW", "AdamW8bit", "PagedAdamW", "PagedAdamW8bit", "PagedAdamW32bit", "Lion", "Lion8bit",
    "PagedLion8bit", "SGDNesterov", "SGDNesterov8bit", "DAdaptation", "DAdaptAdamPreprint", "DAdaptAdaGrad",
    "DAdaptAdam", "DAdaptAdan", "DAdaptAdanIP", "DAdaptLion", "DAdaptSGD", "Prodigy", "AdaFactor",
    "RAdamScheduleFree", "AdamWScheduleFree", "SGDScheduleFree",
    # plain torch.optim classes, which sd-scripts looks up by name
    "Adam", "SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam", "ASGD", "Rprop",
)
MIN_BUCKET_STEP = {"train_network.py": 64, "sdxl_train_network.py": 32}


def _subsets(dataset_config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every subset with the keys it inherits from its dataset and [general] filled in."""
    general = dataset_config.get("general", {})
    out = []
    for dataset in dataset_config.get("datasets", []):
        inherited = {**general, **{k: v for k, v in dataset.items() if k != "subsets"}}
        out += [{**inherited, **subset} for subset in dataset.get("subsets", [])]
    return out


def _datasets(dataset_config: dict[str, Any]) -> list[dict[str, Any]]:
    general = dataset_config.get("general", {})
    return [{**general, **d} for d in dataset_config.get("datasets", [])]


def config_problems(args: dict[str, Any], dataset_config: dict[str, Any], script: str) -> list[str]:
    """Problems of a (flattened) arguments file together with its dataset config."""
    p: list[str] = []
    subsets = _subsets(dataset_config)
    if args.get("cache_latents") or args.get("cache_latents_to_disk"):
        if any(s.get("random_crop") or s.get("color_aug") for s in subsets):
            p.append("cache_latents = true with random_crop or color_aug: sd-scripts asserts that cached "
                     "latents cannot be randomly cropped or colour-augmented; turn one of them off")
    scheduler = args.get("lr_scheduler", "constant")
    if args.get("lr_warmup_steps") and scheduler == "constant":
        p.append("lr_warmup_steps with lr_scheduler = 'constant': sd-scripts raises ValueError; "
                 "use 'constant_with_warmup'")
    if isinstance(scheduler, str) and scheduler not in SCHEDULERS and not scheduler.startswith("adafactor:"):
        p.append(f"lr_scheduler = {scheduler!r}: unknown{did_you_mean(scheduler, SCHEDULERS)}")
    optimizer = args.get("optimizer_type", "")
    if optimizer and "." not in optimizer and optimizer.lower() not in {o.lower() for o in OPTIMIZERS}:
        p.append(f"optimizer_type = {optimizer!r}: unknown{did_you_mean(optimizer, OPTIMIZERS)}")
    if args.get("max_token_length") not in (None, 150, 225):
        p.append(f"max_token_length = {args['max_token_length']!r}: sd-scripts accepts 150 or 225 "
                 "(leave it out for 75)")
    if script == "sdxl_train_network.py":
        if args.get("v2"):
            p.append("v2 = true on SDXL: sdxl_train_network.py asserts v2 is off")
        if args.get("clip_skip") is not None:
            p.append("clip_skip on SDXL: sdxl_train_network.py ignores it; leave it out")
    if args.get("cache_text_encoder_outputs") or args.get("cache_text_encoder_outputs_to_disk"):
        if not args.get("network_train_unet_only"):
            p.append("cache_text_encoder_outputs needs network_train_unet_only: cached outputs cannot train "
                     "the text encoder")
        for key in ("shuffle_caption", "caption_dropout_rate", "caption_tag_dropout_rate", "token_warmup_step"):
            if any(s.get(key) for s in subsets) or args.get(key):
                p.append(f"cache_text_encoder_outputs with {key}: captions must not change between epochs "
                         "when their encodings are cached")
    for full, precision in (("full_bf16", "bf16"), ("full_fp16", "fp16")):
        if args.get(full) and args.get("mixed_precision") != precision:
            p.append(f"{full} = true needs mixed_precision = {precision!r}")
    if args.get("persistent_data_loader_workers") and args.get("max_data_loader_n_workers", 8) == 0:
        p.append("persistent_data_loader_workers with max_data_loader_n_workers = 0: PyTorch refuses it")
    if args.get("sample_every_n_steps") and not args.get("sample_prompts"):
        p.append("sample_every_n_steps without sample_prompts: sd-scripts crashes when it first samples")
    if args.get("adaptive_noise_scale") is not None and args.get("noise_offset") is None:
        p.append("adaptive_noise_scale needs noise_offset")
    if not args.get("network_module"):
        p.append("network_module is not set: use 'networks.lora'")
    p += _bucket_problems(args, dataset_config, script)
    return p


def _bucket_problems(args: dict[str, Any], dataset_config: dict[str, Any], script: str) -> list[str]:
    p: list[str] = []
    for i, d in enumerate(_datasets(dataset_config)):
        where = f"datasets[{i}]"
        resolution = d.get("resolution", args.get("resolution"))
        if resolution is None:
            p.append(f"{where}: no resolution: sd-scripts asserts 'resolution is required'")
            continue
        if isinstance(resolution, str):
            resolution = [int(v) for v in resolution.split(",")]
        width, height = (resolution, resolution) if isinstance(resolution, int) else resolution
        if d.get("validation_split") and d.get("validation_seed") is None:
            p.append(f"{where}: validation_split without validation_seed: the train and validation "
                     "splits would overlap")
        if not d.get("enable_bucket", args.get("enable_bucket", False)):
            continue
        step = d.get("bucket_reso_steps", 64)
        low, high = d.get("min_bucket_reso", 256), d.get("max_bucket_reso", 1024)
        need = MIN_BUCKET_STEP.get(script, 64)
        if step % need:
            p.append(f"{where}: bucket_reso_steps = {step}: {script} asserts it is divisible by {need}")
        if width % step or height % step:
            p.append(f"{where}: resolution {width}x{height} is not a multiple of bucket_reso_steps = {step}")
        if low % step or high % step:
            p.append(f"{where}: min/max_bucket_reso {low}/{high} must be multiples of bucket_reso_steps = {step}")
        if high < max(width, height):
            p.append(f"{where}: max_bucket_reso = {high} is smaller than the resolution's longer side "
                     f"{max(width, height)}: sd-scripts asserts it is not")
        if low > high:
            p.append(f"{where}: min_bucket_reso = {low} is larger than max_bucket_reso = {high}")
    return p


#: Arguments the rendered config.toml sets that are not named after a recipe field (those are found by name).
_SET_BY = {
    "the model (--model / [models] in gaze.toml)": ("pretrained_model_name_or_path",),
    "tokenizer_cache_dir in gaze.toml": ("tokenizer_cache_dir",),
    "optimizer.unet_lr": ("learning_rate", "unet_lr"), "optimizer.type": ("optimizer_type",),
    "optimizer.scheduler": ("lr_scheduler",), "optimizer.warmup_steps": ("lr_warmup_steps",),
    "training.train_text_encoder": ("network_train_unet_only",), "training.attention": ATTENTION_FLAGS.values(),
    "the run folder and the recipe's name (gaze sets them)": ("output_dir", "output_name", "logging_dir",
                                                              "metadata_title", "training_comment", "config_file"),
    "gaze (safetensors, TensorBoard and plain log lines, which reports read)": (
        "save_model_as", "log_with", "console_log_simple"),
    "trackers in gaze.toml / --log-with (the W&B run is named after the run folder, its project after the "
    "baseline)": ("wandb_run_name", "log_tracker_name"),
    "the data group (gaze writes dataset.toml)": ("dataset_config",),
    "sampling.prompts, sampling.every_n_steps, sampling.sampler": (
        "sample_prompts", "sample_every_n_steps", "sample_sampler"),
    # dataset.toml sets these for every subset, and sd-scripts lets the dataset config win over the
    # arguments file (config_util.BlueprintGenerator): an extra_args entry would be silently ignored
    "the dataset (--dataset / gaze.toml)": ("train_data_dir", "reg_data_dir", "in_json", "dataset_class"),
    "data.resolution": ("resolution",), "training.batch_size": ("train_batch_size",),
    "data.buckets": ("enable_bucket", "min_bucket_reso", "max_bucket_reso", "bucket_reso_steps", "bucket_no_upscale"),
    "data.flip": ("flip_aug",), "data.num_repeats": ("dataset_repeats",),
    "data.caption_extension": ("caption_extension", "caption_extention"),
}
_DATA_ARGUMENTS = ("random_crop", "color_aug", "caption_dropout_rate", "caption_tag_dropout_rate", "caption_separator",
                   "shuffle_caption", "keep_tokens", "validation_split", "validation_seed")


def managed_by(argument: str) -> str | None:
    """The recipe field (or gaze setting) that decides an sd-scripts argument, or None for a free one.
    An extra_args entry for a managed argument would silently win (sd-scripts keeps the later key)."""
    for where, names in _SET_BY.items():
        if argument in names:
            return where
    if argument in _DATA_ARGUMENTS:
        return f"data.{argument}"
    for group, fields in (("training", Training), ("optimizer", Optimizer), ("network", Network)):
        names = {f.name for f in dataclasses.fields(fields)}
        for prefix in (f"{group}_", ""):  # network_dim -> network.dim, max_train_steps -> training.max_...
            if argument.startswith(prefix) and argument.removeprefix(prefix) in names:
                return f"{group}.{argument.removeprefix(prefix)}"
    return None


#: Credentials: a recipe is shared and its arguments are written into config.toml, so never in one.
SECRETS = {"wandb_api_key": "WANDB_API_KEY", "huggingface_token": "HF_TOKEN"}


def extra_args_problems(recipe: Recipe) -> list[str]:
    """extra_args may add arguments, never override the ones the recipe's own fields decide."""
    problems = []
    for key, _value in recipe.extra_args:
        if key in SECRETS:  # the value is a secret: never repeated in the message
            problems.append(f"extra_args sets {key!r}: a credential never goes into a recipe (gaze would write it "
                            f"into config.toml); set the {SECRETS[key]} environment variable instead, which "
                            "the trainer reads itself")
    for key, value in recipe.extra_args:
        if key in SECRETS:
            continue
        if (where := managed_by(key)) is not None:
            problems.append(f"extra_args sets {key!r} = {value!r}, which gaze already sets from {where}; "
                            "change that instead")
    keys = [k for k, _ in recipe.extra_args]
    problems += [f"extra_args sets {k!r} twice" for k in sorted({k for k in keys if keys.count(k) > 1})]
    return problems


def recipe_rules(recipe: Recipe) -> list[str]:
    """Rules that tie a recipe's preparation to how sd-scripts will read the prepared images."""
    d, prep = recipe.data, recipe.prep
    p: list[str] = extra_args_problems(recipe)
    try:
        resolve_sampler(recipe.sampling.sampler)
    except ConfigError as exc:
        p.append(f"sampling.sampler: {exc}")
    if not d.buckets.enabled and not d.random_crop:
        fixed = d.resolution
        if prep.mode == "uncropped":
            p.append("buckets off with uncropped images: sd-scripts refuses every image that is not exactly "
                     f"{fixed[0]}x{fixed[1]} ('image too large, but cropping and bucketing are disabled'); "
                     "use the no-bucket modifier (stretches to the resolution) or turn buckets on")
        elif prep.mode == "crop-orientation" and not prep.portrait == prep.landscape == fixed:
            p.append("buckets off with portrait and landscape crops: sd-scripts needs every image at exactly "
                     f"{fixed[0]}x{fixed[1]}; use the no-bucket modifier or turn buckets on")
        elif prep.mode == "stretch" and prep.stretch_to != fixed:
            p.append(f"prep.stretch_to = {prep.stretch_to} differs from data.resolution = {fixed}: with buckets "
                     "off sd-scripts needs every image at exactly the resolution")
    if not d.caption_separator:
        p.append("data.caption_separator = '': sd-scripts splits captions with str.split, which refuses an empty "
                 "separator; use ',' for tags or '. ' for sentences")
    if recipe.training.max_token_length not in (75, 150, 225):
        p.append(f"training.max_token_length = {recipe.training.max_token_length}: expected 75, 150 or 225")
    if recipe.training.mixed_precision == "no" and recipe.training.full_bf16:
        p.append("training.full_bf16 needs training.mixed_precision = 'bf16'")
    return p
