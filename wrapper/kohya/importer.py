"""`gaze import`: kohya_ss GUI configurations and sd-scripts config files as recipe values.

Two formats come in:
- a kohya_ss LoRA preset or saved configuration (.json, GUI keys): translated into the sd-scripts
  arguments kohya_ss itself would write (kohya_gui/lora_gui.py train_model: `max_resolution` becomes
  `resolution`, `lr_warmup` percent a fraction, `optimizer` `optimizer_type`, `xformers` the attention
  flag, zero learning rates the train-only flags, and "", False, None and 0 are dropped, so sd-scripts'
  defaults apply);
- an sd-scripts arguments file (config.toml: one level of tables flattened, as read_config_from_file
  does) and its dataset config (dataset.toml: a subset's value wins over its dataset's, then [general],
  then the argument of the same name, then the default: config_util.BlueprintGenerator).
Then every key becomes one Note: a recipe field (the value sd-scripts would use, its default included),
an extra_args entry (a free sd-scripts argument), a gaze.toml line (machine paths), gaze's own business,
or not representable, with the reason. Nothing is dropped silently. kohya_ss's GUI keys are
translated first (wrapper.kohya.kohya_ss); wrapper.kohya.recipe_module writes the recipe module
(choosing the baseline is the command's job: this package never sees the built-in recipes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wrapper.errors import ConfigError
from wrapper.kohya import interface, prompt_lines
from wrapper.kohya.rules import managed_by
from wrapper.kohya.samplers import resolve_sampler
from wrapper.recipe import SamplePrompt

Verdict = Literal["recipe", "extra_args", "gaze.toml", "gaze", "gui", "default", "dropped"]
KOHYA_SS, SD_SCRIPTS = "kohya_ss", "sd-scripts"
SCRIPT = {"sd15": "train_network.py", "sdxl": "sdxl_train_network.py"}
OFF = ("", False, None)  # kohya_ss drops these (and 0, which equals False) from what it passes on


@dataclass(frozen=True)
class Note:
    """What became of one key of the source: `detail` names the field, entry or line, or the reason."""

    key: str
    value: Any
    verdict: Verdict
    detail: str


@dataclass
class Imported:
    """Recipe values read from one configuration, with a note for every key it had."""

    sources: tuple[Path, ...]
    kind: str
    family: str
    groups: dict[str, dict[str, Any]]  # evolve() groups: training, data, optimizer, network, sampling, prep
    extra_args: dict[str, Any]
    settings: dict[str, str]  # gaze.toml lines: dataset, [models] <family>, tokenizer_cache_dir
    notes: list[Note] = field(default_factory=list)
    comment: str = ""  # the source's training_comment, kept for the description
    arguments: dict[str, Any] = field(default_factory=dict)  # the sd-scripts arguments it stands for
    dataset: dict[str, Any] | None = None


# --- reading what sd-scripts reads ---------------------------------------------------------------------------

#: dataset.toml keys and the argparse names they fall back to (BlueprintGenerator's optname map)
DATASET_FALLBACK = {"batch_size": "train_batch_size", "num_repeats": "dataset_repeats"}


def first_subset(dataset: dict[str, Any] | None) -> dict[str, Any]:
    """The first subset with what it inherits from its dataset and [general] (the subset wins)."""
    if not dataset:
        return {}
    datasets = dataset.get("datasets") or [{}]
    first = datasets[0]
    subsets = first.get("subsets") or [{}]
    return {**dataset.get("general", {}), **{k: v for k, v in first.items() if k != "subsets"}, **subsets[0]}


def effective(arguments: dict[str, Any], dataset: dict[str, Any] | None, table: dict[str, dict[str, Any]]):
    """A reader of one setting as sd-scripts will use it: the dataset config's, the argument's, the default."""
    merged = first_subset(dataset)

    def value(key: str) -> Any:
        if merged.get(key) is not None:
            return merged[key]
        argument = DATASET_FALLBACK.get(key, key)
        if arguments.get(argument) is not None:
            return arguments[argument]
        fact = table.get(argument)
        return fact["default"] if fact else None

    return value


def learning_rates(read) -> dict[str, Any]:
    """The rates networks.lora uses: U-Net unet_lr or learning_rate; text encoder the first text_encoder_lr
    or learning_rate, None when it is not trained."""
    te = read("text_encoder_lr")
    te = te[0] if isinstance(te, list) and te else (te if not isinstance(te, list) else None)
    trained = not read("network_train_unet_only")
    return {"U-Net learning rate": read("unet_lr") or read("learning_rate"),
            "text-encoder learning rate": (te or read("learning_rate")) if trained else None}


def attention(read) -> str:
    """train_util.replace_unet_modules: mem_eff_attn before xformers before sdpa, else plain attention."""
    return next((name for flag, name in (("mem_eff_attn", "mem_eff"), ("xformers", "xformers"), ("sdpa", "sdpa"))
                 if read(flag)), "none")


# --- sd-scripts arguments -> recipe fields ----------------------------------------------------------------

#: argument -> recipe field, for arguments whose value is copied (converted to the field's type).
FIELDS: dict[str, tuple[str, str, Any]] = {
    "network_module": ("network", "module", str), "network_dim": ("network", "dim", int),
    "network_alpha": ("network", "alpha", float), "optimizer_type": ("optimizer", "type", str),
    "lr_scheduler": ("optimizer", "scheduler", str), "max_grad_norm": ("optimizer", "max_grad_norm", float),
    "max_train_steps": ("training", "max_train_steps", int),
    "gradient_accumulation_steps": ("training", "gradient_accumulation_steps", int),
    "mixed_precision": ("training", "mixed_precision", str), "full_bf16": ("training", "full_bf16", bool),
    "save_state": ("training", "save_state", bool),
    "gradient_checkpointing": ("training", "gradient_checkpointing", bool),
    "cache_latents": ("training", "cache_latents", bool),
    "max_data_loader_n_workers": ("training", "max_data_loader_n_workers", int),
    "persistent_data_loader_workers": ("training", "persistent_data_loader_workers", bool),
    "v2": ("training", "v2", bool), "v_parameterization": ("training", "v_parameterization", bool),
    "no_half_vae": ("training", "no_half_vae", bool),
    "batch_size": ("training", "batch_size", int),
    "random_crop": ("data", "random_crop", bool), "flip_aug": ("data", "flip", bool),
    "color_aug": ("data", "color_aug", bool), "caption_dropout_rate": ("data", "caption_dropout_rate", float),
    "caption_tag_dropout_rate": ("data", "caption_tag_dropout_rate", float),
    "caption_separator": ("data", "caption_separator", str), "shuffle_caption": ("data", "shuffle_caption", bool),
    "keep_tokens": ("data", "keep_tokens", int), "caption_extension": ("data", "caption_extension", str),
    "num_repeats": ("data", "num_repeats", int), "validation_split": ("data", "validation_split", float),
    "validation_seed": ("data", "validation_seed", int),
    "enable_bucket": ("buckets", "enabled", bool), "min_bucket_reso": ("buckets", "min_reso", int),
    "max_bucket_reso": ("buckets", "max_reso", int), "bucket_reso_steps": ("buckets", "reso_steps", int),
    "bucket_no_upscale": ("buckets", "no_upscale", bool),
}
#: arguments whose None has a meaning a recipe field spells as None too
OPTIONAL = {"network_dropout": ("network", "dropout", float), "noise_offset": ("training", "noise_offset", float),
            "min_snr_gamma": ("training", "min_snr_gamma", float), "clip_skip": ("training", "clip_skip", int),
            "save_every_n_steps": ("training", "save_every_n_steps", int),
            "validate_every_n_steps": ("training", "validate_every_n_steps", int)}
#: arguments read into recipe fields by their own rules below
DERIVED = {
    "learning_rate": "optimizer.unet_lr / optimizer.text_encoder_lr (the rate where no other is given)",
    "unet_lr": "optimizer.unet_lr", "text_encoder_lr": "optimizer.text_encoder_lr (networks.lora reads the first)",
    "network_train_unet_only": "training.train_text_encoder", "network_args": "network.args",
    "optimizer_args": "optimizer.args", "lr_warmup_steps": "optimizer.warmup_steps",
    "xformers": "training.attention", "sdpa": "training.attention", "mem_eff_attn": "training.attention",
    "resolution": "data.resolution", "max_token_length": "training.max_token_length", "seed": "training.seed",
    "save_precision": "training.save_precision", "cache_text_encoder_outputs": "training.cache_text_encoder_outputs",
    "sample_prompts": "sampling.prompts", "sample_every_n_steps": "sampling.every_n_steps",
    "sample_sampler": "sampling.sampler", "train_batch_size": "training.batch_size",
    "dataset_repeats": "data.num_repeats",
}
#: settings sd-scripts may leave open and a recipe may not: what the recipe keeps instead
UNSET = {"seed": "no seed: sd-scripts would draw a random one; the recipe keeps the baseline's fixed seed, so "
                 "runs can be compared",
         "save_precision": "not set: sd-scripts saves in the network's own dtype (float32 unless full_fp16 or "
                           "full_bf16); the recipe keeps the baseline's save precision"}
#: machine paths: gaze.toml, never a recipe
SETTINGS = {"pretrained_model_name_or_path": "[models]", "train_data_dir": "dataset", "image_dir": "dataset",
            "tokenizer_cache_dir": "tokenizer_cache_dir"}
GAZE = {
    "output_dir": "the run folder (runs/<recipe>/<time>-<id>/output)",
    "output_name": "the recipe's name", "logging_dir": "the run folder's logs/", "log_prefix": "the run folder",
    "log_with": "TensorBoard, which the reports read",
    "save_model_as": "safetensors, which reports and generation read",
    "dataset_config": "its dataset.toml; the config it points at is imported", "config_file": "its own configs",
    "metadata_title": "the recipe's name", "console_log_simple": "plain log lines, which it reads",
    "training_comment": "a comment naming the recipe and its deliberate glitches; the source's is kept in the "
                        "recipe's description",
}
DROPPED = {
    "reg_data_dir": "regularisation images: gaze trains one dataset folder (every sub-folder a subset)",
    "in_json": "fine-tuning metadata: gaze trains DreamBooth-style caption files",
    "resume": "gaze resume RUN_DIR continues a run from its own saved state",
    "network_weights": "a machine path to a LoRA to start from: not a recipe value",
    "vae": "a machine path (no gaze.toml setting for a VAE)", "base_weights": "machine paths",
    "wandb_api_key": "gaze logs to TensorBoard, never to an online service",
    "wandb_run_name": "gaze logs to TensorBoard",
    "log_tracker_config": "a machine path", "log_tracker_name": "gaze reads the default tracker name",
    "output_config": "a command-line switch, not a setting", "huggingface_token": "gaze uploads nothing",
    "huggingface_repo_id": "gaze uploads nothing", "save_state_to_huggingface": "gaze uploads nothing",
    "class_tokens": "the caption of images without a caption file: gaze requires caption files",
    "is_reg": "regularisation images: gaze trains one dataset folder",
    "metadata_file": "fine-tuning metadata: gaze trains DreamBooth-style caption files",
    "conditioning_data_dir": "masks for masked_loss: a machine path",
    "network_multiplier": "a dataset's LoRA multiplier: gaze trains one dataset",
    "custom_attributes": "per-subset attributes for other trainers",
}


def _convert(value: Any, kind: Any) -> Any:
    if value is None:
        return None
    if kind is bool:
        return bool(value)
    return kind(value)


def _resolution(value: Any) -> tuple[int, int]:
    """'512', '512,768' (arguments), 512 or [512, 768] (dataset config) -> (width, height)."""
    if isinstance(value, str):
        value = [int(v) for v in value.split(",")]
    if isinstance(value, int):
        return value, value
    if isinstance(value, list | tuple) and len(value) in (1, 2):
        return int(value[0]), int(value[-1])
    raise ConfigError(f"resolution = {value!r}: expected 'W,H', W or [W, H]")


def _warmup(read, notes: list[Note]) -> int:
    warmup = read("lr_warmup_steps") or 0
    if isinstance(warmup, float):  # a fraction of all steps (train_util.get_scheduler_fix)
        if read("max_train_epochs"):
            notes.append(Note("lr_warmup_steps", warmup, "dropped", "a fraction of a step count sd-scripts "
                              "derives from max_train_epochs and the images; set optimizer.warmup_steps by hand"))
            return 0
        return int(warmup * read("max_train_steps"))
    return int(warmup)


class Reader:
    """Turns sd-scripts arguments (+ a dataset config) into recipe groups, notes and extra_args."""

    def __init__(self, arguments: dict[str, Any], dataset: dict[str, Any] | None, family: str) -> None:
        self.arguments, self.dataset, self.family = arguments, dataset, family
        self.table = interface.committed_interface()["scripts"][SCRIPT[family]]
        self.read = effective(arguments, dataset, self.table)
        self.groups: dict[str, dict[str, Any]] = {g: {} for g in ("training", "data", "optimizer", "network",
                                                                   "sampling", "prep")}
        self.extra: dict[str, Any] = {}
        self.settings: dict[str, str] = {}
        self.notes: list[Note] = []

    def set(self, dotted: str, value: Any) -> None:
        group, name = dotted.split(".", 1)
        if group == "buckets":
            self.groups["data"].setdefault("buckets", {})[name] = value
        else:
            self.groups[group][name] = value

    def fields(self) -> None:
        for argument, (group, name, kind) in {**FIELDS, **OPTIONAL}.items():
            value = self.read(argument)
            if value is None and argument in FIELDS:
                continue
            self.set(f"{group}.{name}", _convert(value, kind))
        r = self.read
        self.set("prep.caption_extension", self.groups["data"]["caption_extension"])  # the captions gaze copies
        if self.family == "sdxl" and r("clip_skip") is not None:
            self.groups["training"].pop("clip_skip")  # sdxl_train_network.py ignores it; gaze refuses it
        rates = learning_rates(r)
        self.set("optimizer.unet_lr", float(rates["U-Net learning rate"]))
        if rates["text-encoder learning rate"] is not None:
            self.set("optimizer.text_encoder_lr", float(rates["text-encoder learning rate"]))
        self.set("training.train_text_encoder", not r("network_train_unet_only"))
        self.set("network.args", tuple(r("network_args") or ()))
        self.set("optimizer.args", tuple(r("optimizer_args") or ()))
        self.set("optimizer.warmup_steps", _warmup(r, self.notes))
        self.set("training.attention", attention(r))
        self.set("training.max_token_length", r("max_token_length") or 75)
        if self.family == "sdxl":
            self.set("training.cache_text_encoder_outputs", bool(r("cache_text_encoder_outputs")))
        resolution = r("resolution")
        if resolution is None:
            raise ConfigError("no resolution in the arguments or the dataset config: sd-scripts asserts "
                              "'resolution is required'")
        self.set("data.resolution", _resolution(resolution))
        if r("seed") is not None:
            self.set("training.seed", int(r("seed")))
        if r("save_precision") is not None:
            self.set("training.save_precision", r("save_precision"))
        self.unset = {key: why for key, why in UNSET.items() if r(key) is None}
        self._prep()

    def _prep(self) -> None:
        """kohya_ss and sd-scripts train the images as they are; gaze trains a prepared copy."""
        size = self.groups["data"]["resolution"]
        if self.read("enable_bucket") or self.read("random_crop"):
            self.set("prep.mode", "uncropped")
        else:  # sd-scripts needs every image at exactly the resolution: a centre crop is a no-op for those
            self.groups["prep"] |= {"mode": "crop-orientation", "portrait": size, "landscape": size, "square": size}

    def note(self, key: str, value: Any, origin: str = "", label: str | None = None, level: int = 0) -> None:
        """The verdict on sd-scripts setting `key` (`origin`: where it was; `label`: its name in the source;
        `level`: 0 the arguments, 1 [general], 2 the first dataset, 3 its first subset)."""
        where = f"{origin}{label or key}"
        if key == "clip_skip" and self.family == "sdxl":
            self.notes.append(Note(where, value, "default", "sdxl_train_network.py ignores clip_skip (it only warns); "
                                   "gaze leaves it out"))
        elif key in SETTINGS:
            self.notes.append(Note(where, value, "gaze.toml", self._setting(key, value)))
        elif key in GAZE:
            self.notes.append(Note(where, value, "gaze", f"gaze decides: {GAZE[key]}"))
        elif key in DROPPED:
            self.notes.append(Note(where, value, "dropped", DROPPED[key]))
        elif key in FIELDS or key in OPTIONAL or key in DERIVED:
            self._field_note(where, key, value, level)
        elif (fact := self.table.get(key)) is not None and managed_by(key) is None:
            self.extra[key] = self._as_argument(key, value, fact)
            why = " (sd-scripts then trains that many epochs, whatever max_train_steps says)" if (
                key == "max_train_epochs") else ""
            self.notes.append(Note(where, value, "extra_args", f"extra_args {key} = {self.extra[key]!r}{why}"))
        elif fact is not None:
            self.notes.append(Note(where, value, "dropped", f"gaze sets it from {managed_by(key)}"))
        else:
            self.notes.append(Note(where, value, "dropped", f"not an argument of {SCRIPT[self.family]} in sd-scripts "
                                   "v0.10.1, which ignores it in a config file"))

    def unset_notes(self) -> None:
        """Settings the source leaves to sd-scripts' choice, which a recipe cannot leave open."""
        noted = {n.key for n in self.notes}
        self.notes += [Note(key, None, "dropped", why) for key, why in self.unset.items() if key not in noted]

    def _shadowed(self, key: str, level: int) -> bool:
        """A value that a more specific level of the dataset config replaces (BlueprintGenerator's order)."""
        if not self.dataset:
            return False
        first = (self.dataset.get("datasets") or [{}])[0]
        levels = [self.dataset.get("general", {}), first, (first.get("subsets") or [{}])[0]]
        name = {v: k for k, v in DATASET_FALLBACK.items()}.get(key, key)
        return any(table.get(name) is not None for table in levels[level:])

    def _field_note(self, where: str, key: str, value: Any, level: int) -> None:
        group, name, _ = FIELDS.get(key) or OPTIONAL.get(key) or ("", "", None)
        target = DERIVED.get(key) or f"{'data.buckets' if group == 'buckets' else group}.{name}"
        shadowed = self._shadowed(key, level)
        if key in self.unset:
            self.notes.append(Note(where, value, "dropped", self.unset[key]))
        elif shadowed:
            self.notes.append(Note(where, value, "dropped", "replaced by the value a more specific table of "
                                   "the dataset config gives (sd-scripts reads the subset first)"))
        elif key == "text_encoder_lr" and not self.groups["training"].get("train_text_encoder"):
            self.notes.append(Note(where, value, "recipe", "training.train_text_encoder = False (the U-Net only)"))
        else:
            self.notes.append(Note(where, value, "recipe", target))

    def _setting(self, key: str, value: Any) -> str:
        if key == "pretrained_model_name_or_path":
            line = f"[models] {self.family} = {json.dumps(str(value))}"
            self.settings[f"models.{self.family}"] = str(value)
        elif key == "tokenizer_cache_dir":
            line = f"tokenizer_cache_dir = {json.dumps(str(value))}"
            self.settings["tokenizer_cache_dir"] = str(value)
        else:
            self.settings.setdefault("dataset", str(value))
            if self.settings["dataset"] != str(value):
                return (f"another image folder: gaze trains one dataset folder ({self.settings['dataset']}), "
                        "every sub-folder a subset")
            line = f"dataset = {json.dumps(str(value))}"
        return f"a machine path, not a recipe value: put `{line}` in gaze.toml"

    @staticmethod
    def _as_argument(key: str, value: Any, fact: dict[str, Any]) -> Any:
        """A value as an arguments file must carry it (dataset-config spellings converted)."""
        if key == "face_crop_aug_range" and isinstance(value, list):
            return ",".join(str(float(v)) for v in value)
        if fact["kind"] in ("storetrue", "storefalse"):
            return bool(value)
        kind = {"int": int, "float": float}.get(fact["type"])
        if fact["nargs"] in ("*", "+"):
            return [kind(v) if kind else str(v) for v in (value if isinstance(value, list) else str(value).split())]
        if kind is not None and not isinstance(value, bool):
            return kind(value)
        return value

    def sampling(self, lines: list[str] | None, origin: str) -> None:
        """Sample prompts (sd-scripts' .txt lines) as the recipe's sampling group."""
        every = self.read("sample_every_n_steps")
        if not lines:
            self.groups["sampling"] |= {"prompts": (), "every_n_steps": None}
            return
        prompts, steps, scales, samplers = [], set(), set(), set()
        for number, line in prompt_lines.file_lines("\n".join(lines)):
            read = prompt_lines.split_line(line)
            o = read.options
            if prompt_lines.text_problems(read.prompt) or read.ignored:
                self.notes.append(Note(f"{origin}line {number}", line, "dropped", "a prompt gaze cannot write back "
                                       "exactly (see prompt_lines.text_problems) or with options it does not know"))
                continue
            prompts.append(SamplePrompt(prompt=read.prompt, negative=o.get("n", ""), width=int(o.get("w", 512)),
                                        height=int(o.get("h", 512)), seed=int(o["d"]) if "d" in o else None))
            steps.add(max(1, min(1000, int(o.get("s", 30)))))
            scales.add(float(o.get("l", 7.5)))
            samplers.add(o.get("ss", self.read("sample_sampler")))
        for what, values in (("steps (--s)", steps), ("CFG scale (--l)", scales), ("sampler (--ss)", samplers)):
            if len(values) > 1:
                self.notes.append(Note(f"{origin}{what}", sorted(map(str, values)), "dropped",
                                       "a recipe samples every prompt alike: the first line's value is used"))
        first = prompt_lines.split_line(prompt_lines.file_lines("\n".join(lines))[0][1]).options
        sampler = first.get("ss", self.read("sample_sampler"))
        self.groups["sampling"] |= {
            "prompts": tuple(prompts), "every_n_steps": every, "steps": max(1, min(1000, int(first.get("s", 30)))),
            "cfg": float(first.get("l", 7.5)), "sampler": resolve_sampler(sampler)[1],
        }


# --- sd-scripts files ---------------------------------------------------------------------------------------


def _load_toml(path: Path) -> dict[str, Any]:
    import toml

    try:
        return toml.load(path)
    except (OSError, toml.TomlDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as sd-scripts reads it (toml 0.10.2): {exc}") from None


def is_dataset_config(tables: dict[str, Any]) -> bool:
    return bool(tables) and set(tables) <= {"general", "datasets"}


def _prompt_file(path: Path, notes: list[Note]) -> list[str] | None:
    if path.suffix != ".txt" or not path.is_file():
        why = "sample prompts in .toml or .json files" if path.suffix != ".txt" else "the file does not exist"
        notes.append(Note("sample_prompts", str(path), "dropped", f"not imported: {why}; add the recipe's "
                          "sampling.prompts by hand"))
        return None
    return [line for _, line in prompt_lines.file_lines(path.read_text(encoding="utf-8"))]


def read_sd_scripts(files: list[Path], family: str | None = None) -> Imported:
    """An sd-scripts config.toml and, optionally, its dataset.toml (else the one dataset_config names)."""
    from wrapper.kohya.configs import decide_script

    loaded = [(path, _load_toml(path)) for path in files]
    configs = [(p, t) for p, t in loaded if not is_dataset_config(t)]
    datasets = [(p, t) for p, t in loaded if is_dataset_config(t)]
    if len(configs) != 1 or len(datasets) > 1:
        raise ConfigError("gaze import: expected one sd-scripts arguments file (config.toml) and at most one "
                          f"dataset config (dataset.toml), got {len(configs)} and {len(datasets)}")
    config_path, tables = configs[0]
    arguments = interface.flatten(tables)
    dataset_path = datasets[0][0] if datasets else _named_dataset(arguments, config_path)
    dataset = datasets[0][1] if datasets else (_load_toml(dataset_path) if dataset_path else None)
    if family is None:
        script, _ = decide_script(config_path.read_text(encoding="utf-8"), tables)
        family = "sdxl" if script == SCRIPT["sdxl"] else "sd15"
    reader = Reader(arguments, dataset, family)
    reader.fields()
    for key, value in arguments.items():
        if key != "sample_prompts":
            reader.note(key, value)
    prompts = arguments.get("sample_prompts")
    lines = _prompt_file(Path(prompts), reader.notes) if prompts else None
    if prompts:
        reader.notes.append(Note("sample_prompts", prompts, "recipe", "sampling.prompts (the file's lines)"))
    reader.sampling(lines, "sample_prompts ")
    _dataset_notes(reader, dataset)
    return _imported(reader, (*[p for p, _ in configs], *([dataset_path] if dataset_path else [])), SD_SCRIPTS,
                     comment=str(arguments.get("training_comment") or ""))


def _named_dataset(arguments: dict[str, Any], config_path: Path) -> Path | None:
    named = arguments.get("dataset_config")
    if not named:
        return None
    for candidate in (Path(named), config_path.parent / named, config_path.parent / Path(named).name):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{config_path}: dataset_config = {named!r} does not exist here; pass the dataset.toml too: "
                      f"gaze import {config_path} DATASET.toml")


def _dataset_notes(reader: Reader, dataset: dict[str, Any] | None) -> None:
    """A note for every key of the dataset config; only its first dataset's first subset is trained."""
    if not dataset:
        return
    for key, value in dataset.get("general", {}).items():
        reader.note(key, value, "[general] ", level=1)
    for i, table in enumerate(dataset.get("datasets", [])):
        for key, value in table.items():
            if key == "subsets":
                continue
            if i == 0:
                reader.note(key, value, f"datasets[{i}] ", level=2)
            else:
                reader.notes.append(Note(f"datasets[{i}] {key}", value, "dropped", "gaze trains one dataset"))
        for j, subset in enumerate(table.get("subsets", [])):
            for key, value in subset.items():
                if i == j == 0:
                    reader.note(key, value, f"datasets[{i}].subsets[{j}] ", level=3)
                elif key == "image_dir":
                    reader.notes.append(Note(f"datasets[{i}].subsets[{j}] {key}", value, "dropped",
                                             "another image folder: gaze trains one dataset folder (put the "
                                             "folders side by side in it: every sub-folder becomes a subset)"))
                else:
                    reader.notes.append(Note(f"datasets[{i}].subsets[{j}] {key}", value, "dropped",
                                             "gaze trains one dataset folder, every sub-folder a subset with the "
                                             "first subset's settings"))


def _imported(reader: Reader, sources: tuple[Path, ...], kind: str, comment: str = "") -> Imported:
    reader.unset_notes()
    groups = {name: values for name, values in reader.groups.items() if values}
    return Imported(sources=sources, kind=kind, family=reader.family, groups=groups, extra_args=reader.extra,
                    settings=reader.settings, notes=reader.notes, comment=comment, arguments=reader.arguments,
                    dataset=reader.dataset)
