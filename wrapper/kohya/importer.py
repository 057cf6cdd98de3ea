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
or not representable, with the reason. Nothing is dropped silently. Building and writing the recipe
module is the command's job (this package never sees the built-in recipes).
"""

from __future__ import annotations

import json
import re
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
            "save_every_n_steps": ("training", "save_every_n_steps", int)}
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


# --- kohya_ss ------------------------------------------------------------------------------------------------

#: GUI keys kohya_ss passes on under another name or shape (kohya_gui/lora_gui.py train_model)
RENAMED = {"max_resolution": "resolution", "optimizer": "optimizer_type", "sdxl_no_half_vae": "no_half_vae",
           "sdxl_cache_text_encoder_outputs": "cache_text_encoder_outputs", "lora_network_weights": "network_weights"}
SPLIT = ("network_args", "optimizer_args", "lr_scheduler_args")  # strings split at white space, quotes removed
NOISE = {"noise_offset": "Original", "adaptive_noise_scale": "Original", "noise_offset_random_strength": "Original",
         "multires_noise_iterations": "Multires", "multires_noise_discount": "Multires"}
GUI_READ = ("epoch", "conv_dim", "conv_alpha", "lr_warmup_steps")  # folded into other arguments by kohya_ss
NETWORK_ARG_KEYS = ("down_lr_weight", "mid_lr_weight", "up_lr_weight", "block_lr_zero_threshold", "block_dims",
                    "block_alphas", "conv_block_dims", "conv_block_alphas", "rank_dropout", "module_dropout")
LORAPLUS = ("loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio")
OTHER_MODELS = ("flux1_checkbox", "sd3_checkbox", "hunyuan_image_checkbox", "anima_checkbox", "lumina_checkbox")
#: GUI keys with no sd-scripts argument of their own: (verdict, what they are)
GUI_ONLY: dict[str, tuple[Verdict, str]] = {
    "LoRA_type": ("recipe", "network.module and network.args (kohya_ss derives both from it)"),
    "sdxl": ("recipe", "the model family: the recipe derives from an SDXL or an SD1.5 baseline"),
    "noise_offset_type": ("recipe", "which of the noise settings kohya_ss passes on"),
    "additional_parameters": ("recipe", "its --key value words are imported as the arguments they name"),
    "lr_warmup": ("recipe", "optimizer.warmup_steps (kohya_ss passes it as a fraction of all steps)"),
    "num_cpu_threads_per_process": ("gaze", "a launcher setting: gaze run --threads"),
    "num_processes": ("gaze", "a launcher setting: gaze run --gpus"), "num_machines": ("gaze", "a launcher setting"),
    "multi_gpu": ("gaze", "a launcher setting: gaze run --gpus"), "gpu_ids": ("gaze", "a launcher setting"),
    "main_process_port": ("gaze", "a launcher setting"), "extra_accelerate_launch_args": ("gaze", "a launcher setting"),
    "dynamo_mode": ("gaze", "a launcher setting"), "dynamo_use_fullgraph": ("gaze", "a launcher setting"),
    "dynamo_use_dynamic": ("gaze", "a launcher setting"), "model_list": ("gui", "the GUI's list of known models"),
    "save_as_bool": ("gui", "a GUI switch"), "file_path": ("gui", "the GUI's file field"),
    "use_wandb": ("gaze", "gaze logs to TensorBoard"),
    "stop_text_encoder_training": ("dropped", "kohya_ss passes it on when not 0, but train_network.py has no such "
                                   "argument (sd-scripts ignores it)"),
    "lowvram": ("default", "removed from sd-scripts; kohya_ss no longer passes it"),
}


def _number(value: Any) -> float:
    try:
        return float(value) if value not in OFF else 0.0
    except (TypeError, ValueError):
        return 0.0


def translate_gui(gui: dict[str, Any]) -> tuple[dict[str, Any], list[Note]]:
    """kohya_ss GUI keys -> the sd-scripts arguments kohya_ss would write, and notes on GUI-only keys."""
    notes: list[Note] = []
    lora_type = gui.get("LoRA_type", "Standard")
    out: dict[str, Any] = {}
    for key, value in gui.items():
        if key in GUI_ONLY or key in NETWORK_ARG_KEYS or key in LORAPLUS or key in GUI_READ or key.startswith(
                ("sdxl_", "sd3_", "flux1_")):
            continue
        if key in NOISE and gui.get("noise_offset_type", "Original") != NOISE[key]:
            notes.append(Note(key, value, "default", f"kohya_ss passes it only with noise_offset_type {NOISE[key]!r}"))
            continue
        name = RENAMED.get(key, key)
        out[name] = str(value).replace('"', "").split() if key in SPLIT else value
    for key in [k for k in gui if k.startswith(("sdxl_", "sd3_", "flux1_")) and k not in RENAMED]:
        notes.append(Note(key, gui[key], "default", "a setting for another model type: kohya_ss passes nothing"))
    if gui.get("sdxl"):
        for key in ("sdxl_no_half_vae", "sdxl_cache_text_encoder_outputs"):
            if key in gui:
                out[RENAMED[key]] = bool(gui[key])
    else:
        out.pop("no_half_vae", None)
        out.pop("cache_text_encoder_outputs", None)
    _gui_rates(gui, out)
    _gui_network(gui, lora_type, out, notes)
    _gui_steps(gui, out)
    attention_choice = gui.get("xformers")
    out.pop("xformers", None)
    if attention_choice in (True, "xformers"):
        out["xformers"] = True
    elif attention_choice == "sdpa":
        out["sdpa"] = True
    out.update(_additional(str(gui.get("additional_parameters") or ""), notes))
    for key in ("seed", "clip_skip", "keep_tokens", "gradient_accumulation_steps", "max_token_length",
                "caption_dropout_every_n_epochs", "persistent_data_loader_workers", "min_bucket_reso"):
        if key in out and out[key] not in OFF:
            out[key] = int(_number(out[key]))
    out = {k: v for k, v in out.items() if v not in OFF and not (isinstance(v, int | float) and v == 0)
           and v != []}
    out["max_data_loader_n_workers"] = int(_number(gui.get("max_data_loader_n_workers", 0)))  # always passed
    return out, notes


def _gui_rates(gui: dict[str, Any], out: dict[str, Any]) -> None:
    te, unet = _number(gui.get("text_encoder_lr")), _number(gui.get("unet_lr"))
    out["learning_rate"] = _number(gui.get("learning_rate"))
    out["unet_lr"] = unet or None
    out["text_encoder_lr"] = [te, te] if te > 0 else None
    out["network_train_unet_only"] = te == 0 and unet != 0
    out["network_train_text_encoder_only"] = te != 0 and unet == 0


def _gui_network(gui: dict[str, Any], lora_type: str, out: dict[str, Any], notes: list[Note]) -> None:
    args = list(out.get("network_args") or [])
    if lora_type in ("Standard", "Kohya LoCon"):
        out["network_module"] = "networks.lora"
        if lora_type == "Kohya LoCon":
            args += [f"conv_dim={gui.get('conv_dim')}", f"conv_alpha={gui.get('conv_alpha')}"]
        args += [f"{k}={gui[k]}" for k in NETWORK_ARG_KEYS if gui.get(k) not in (*OFF, 0)]
    else:
        notes.append(Note("LoRA_type", lora_type, "dropped", f"{lora_type!r} is not a networks.lora LoRA (gaze trains "
                          "networks.lora; LyCORIS needs a package outside the train extra): imported as a standard "
                          "LoRA of the same dim and alpha"))
        out["network_module"] = "networks.lora"
    args += [f"{k}={gui[k]}" for k in LORAPLUS if gui.get(k) not in (*OFF, 0)]
    out["network_args"] = args


def _gui_steps(gui: dict[str, Any], out: dict[str, Any]) -> None:
    """Steps, epochs and warm-up as kohya_ss passes them (without the image folder it counts steps in)."""
    steps, epochs, epoch = (int(_number(gui.get(k))) for k in ("max_train_steps", "max_train_epochs", "epoch"))
    out["max_train_steps"] = steps or None
    out["max_train_epochs"] = epochs or (epoch if not steps else None) or None
    warmup_steps, percent = _number(gui.get("lr_warmup_steps")), _number(gui.get("lr_warmup"))
    out["lr_warmup_steps"] = int(warmup_steps) if warmup_steps > 0 else (percent / 100 if percent else None)
    if gui.get("lr_scheduler_num_cycles") in OFF and epoch:
        out["lr_scheduler_num_cycles"] = epoch
    elif gui.get("lr_scheduler_num_cycles") not in OFF:
        out["lr_scheduler_num_cycles"] = int(_number(gui["lr_scheduler_num_cycles"]))


def _additional(text: str, notes: list[Note]) -> dict[str, Any]:
    """kohya_ss' "additional_parameters": extra command-line words, '--key value' or '--flag'."""
    out: dict[str, Any] = {}
    words = text.split()
    for i, word in enumerate(words):
        if not word.startswith("--"):
            continue
        key, eq, value = word[2:].partition("=")
        if not eq:
            value = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else True
        out[key] = _literal(value)
    if text.strip():
        notes.append(Note("additional_parameters", text, "recipe" if out else "dropped",
                          f"read as the arguments {', '.join(out) or '(none)'}"))
    return out


def _literal(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value.strip("\"'")


def _gui_notes(reader: Reader, gui: dict[str, Any], arguments: dict[str, Any], noted: set[str]) -> None:
    """A note for every GUI key, then for every argument kohya_ss derives from several of them."""
    passed: set[str] = set()
    for key, value in gui.items():
        name = RENAMED.get(key, key)
        if key in noted or key == "sample_prompts":
            continue
        if key in GUI_ONLY:
            reader.notes.append(Note(key, value, *GUI_ONLY[key]))
        elif key in GUI_READ or key in NETWORK_ARG_KEYS or key in LORAPLUS:
            reader.notes.append(_read_note(key, value, gui))
        elif name in arguments:
            reader.note(name, arguments[name], label=key)
            passed.add(name)
        elif name in FIELDS or name in OPTIONAL or name in DERIVED:
            reader.note(name, value, label=key)
        elif name in reader.table or name in SETTINGS or name in GAZE or name in DROPPED:
            reader.notes.append(Note(key, value, "default", "off: kohya_ss passes nothing for it"))
        else:
            reader.notes.append(Note(key, value, "dropped", "a kohya_ss setting gaze does not know, with no "
                                     "sd-scripts argument of that name"))
    for name, value in arguments.items():
        if name not in passed and name not in gui:
            reader.note(name, value, label=f"{name} (kohya_ss derives it)")


def _read_note(key: str, value: Any, gui: dict[str, Any]) -> Note:
    """GUI keys kohya_ss folds into other arguments."""
    if key in ("conv_dim", "conv_alpha"):
        if gui.get("LoRA_type") == "Kohya LoCon":
            return Note(key, value, "recipe", "network.args (LoCon)")
        return Note(key, value, "default", "kohya_ss passes it only with LoRA_type 'Kohya LoCon'")
    if key in NETWORK_ARG_KEYS or key in LORAPLUS:
        if value in (*OFF, 0):
            return Note(key, value, "default", "off: kohya_ss passes nothing for it")
        return Note(key, value, "recipe", "network.args")
    if key == "epoch":
        if _number(gui.get("max_train_steps")):
            return Note(key, value, "extra_args", "max_train_steps is given: it only fills an empty "
                        "lr_scheduler_num_cycles (extra_args)")
        return Note(key, value, "extra_args", "extra_args max_train_epochs (kohya_ss counts the steps in its "
                    "image folders; sd-scripts derives the same number from the epochs)")
    return Note(key, value, "recipe", "optimizer.warmup_steps")


def read_kohya_ss(path: Path) -> Imported:
    """A kohya_ss LoRA preset or saved configuration."""
    try:
        gui = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a kohya_ss configuration (JSON): {exc}") from None
    if not isinstance(gui, dict):
        raise ConfigError(f"{path}: not a kohya_ss configuration: expected a JSON object of settings")
    other = [k.removesuffix("_checkbox") for k in OTHER_MODELS if gui.get(k)]
    if other:
        raise ConfigError(f"{path}: a {other[0]} configuration: gaze trains SD1.x, SD2.x and SDXL LoRAs")
    if not gui.get("max_resolution") and not gui.get("dataset_config"):
        raise ConfigError(f"{path}: no max_resolution: a kohya_ss preset may leave it to the GUI's field, and "
                          'sd-scripts needs one; add it, e.g. "max_resolution": "512,512"')
    arguments, notes = translate_gui(gui)
    family = "sdxl" if gui.get("sdxl") else "sd15"
    dataset = None
    named = gui.get("dataset_config")
    if named:
        named_path = Path(named) if Path(named).is_file() else path.parent / Path(named).name
        if not named_path.is_file():
            raise ConfigError(f"{path}: dataset_config = {named!r} does not exist; import its dataset.toml with "
                              "sd-scripts' config instead, or remove the key")
        dataset = _load_toml(named_path)
    reader = Reader(arguments, dataset, family)
    reader.notes += notes
    reader.fields()
    _gui_notes(reader, gui, arguments, {n.key for n in notes})
    text = str(gui.get("sample_prompts") or "")
    lines = [line for _, line in prompt_lines.file_lines(text)] if text.strip() else None
    if "sample_prompts" in gui:
        reader.notes.append(Note("sample_prompts", text, "recipe", "sampling.prompts (its lines)"))
    reader.sampling(lines, "sample_prompts ")
    _dataset_notes(reader, dataset)
    return _imported(reader, (path,), KOHYA_SS, comment=str(gui.get("training_comment") or ""))


def read_files(files: list[Path], family: str | None = None) -> list[Imported]:
    """Each kohya_ss .json is one import; .toml files are one sd-scripts config (+ its dataset config)."""
    for path in map(Path, files):
        if not path.is_file():
            what = "is a folder; expected kohya_ss .json or sd-scripts .toml files" if path.is_dir() else (
                "does not exist")
            raise ConfigError(f"gaze import: {path} {what}")
    jsons = [Path(f) for f in files if Path(f).suffix.lower() == ".json"]
    tomls = [Path(f) for f in files if Path(f).suffix.lower() == ".toml"]
    other = [str(f) for f in files if Path(f) not in (*jsons, *tomls)]
    if other:
        raise ConfigError(f"gaze import: {', '.join(other)}: expected kohya_ss .json or sd-scripts .toml files")
    imports = [read_kohya_ss(path) for path in jsons]
    if tomls:
        imports.append(read_sd_scripts(tomls, family))
    for item in imports:
        if family and item.family != family:
            raise ConfigError(f"{item.sources[0]} is an {item.family} configuration, not {family}")
    return imports


def recipe_name(text: str) -> str:
    """A kebab-case recipe name from a file name: 'SDXL - LoRA v1.0.json' -> 'sdxl-lora-v1-0'."""
    return "-".join(filter(None, re.split(r"[^a-z0-9]+", Path(text).stem.lower()))) or "imported"


# --- the recipe module ---------------------------------------------------------------------------------------

VERDICT_TITLES = {"recipe": "set in the recipe", "extra_args": "passed on as extra_args",
                  "gaze.toml": "machine paths: put them in gaze.toml", "gaze": "decided by gaze",
                  "gui": "kohya_ss GUI settings that mean nothing to training",
                  "default": "off, so sd-scripts' default applies (as with gaze)",
                  "dropped": "NOT REPRESENTABLE in a recipe (left out)"}


def note_lines(notes: list[Note]) -> list[str]:
    """Every note, grouped by verdict, one line each: `key = value: detail`."""
    lines = []
    for verdict, title in VERDICT_TITLES.items():
        chosen = [n for n in notes if n.verdict == verdict]
        if chosen:
            lines.append(f"{title} ({len(chosen)}):")
            lines += [f"  {n.key} = {_short(n.value)}: {n.detail}" for n in chosen]
    return lines


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def settings_lines(settings: dict[str, str]) -> list[str]:
    """The gaze.toml lines for an import's machine paths."""
    plain = [f"{k} = {json.dumps(v)}" for k, v in settings.items() if not k.startswith("models.")]
    models = [f"{k.removeprefix('models.')} = {json.dumps(v)}" for k, v in settings.items() if k.startswith("models.")]
    return plain + (["[models]", *models] if models else [])


def code(value: Any, indent: int = 8) -> str:
    """Python source for a recipe value (SamplePrompt objects as their constructor calls)."""
    if isinstance(value, SamplePrompt):
        fields = ", ".join(f"{k}={code(getattr(value, k))}" for k in ("prompt", "negative", "width", "height", "seed"))
        return f"SamplePrompt({fields})"
    if isinstance(value, tuple) and value and isinstance(value[0], SamplePrompt):
        pad = " " * indent
        return "(\n" + "".join(f"{pad}    {code(v)},\n" for v in value) + f"{pad})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{code(k)}: {code(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple | list):
        items = [code(v) for v in value]
        return f"({items[0]},)" if isinstance(value, tuple) and len(items) == 1 else (
            ("(" if isinstance(value, tuple) else "[") + ", ".join(items) + (")" if isinstance(value, tuple) else "]"))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a Python string literal (double quotes)
    return repr(value)


ABSENT = {KOHYA_SS: "keys the file does not have take sd-scripts' defaults (a kohya_ss preset sets only some "
                   "keys; the GUI fills the others from its own fields, which may differ)",
          SD_SCRIPTS: "keys the files do not have take sd-scripts' defaults, as in sd-scripts"}


def module_text(entries: list[tuple[Imported, str, str, str, str]]) -> str:
    """A recipe module: per entry (import, recipe name, description, baseline module, baseline variable)."""
    bases = sorted({(module, variable) for _, _, _, module, variable in entries})
    head = ['"""Recipes imported by `gaze import` from kohya_ss / sd-scripts configurations.', "",
            "Register this file in gaze.toml (recipes = \"<this file>\"), then e.g. `gaze config NAME --out DIR`.",
            '"""', "", "from __future__ import annotations", ""]
    head += [f"from {module} import {variable}" for module, variable in bases]
    head += ["from wrapper.recipe import SamplePrompt, evolve", ""]
    body, names = [], []
    for imported, name, description, _, variable in entries:
        constant = re.sub(r"\W", "_", name.upper())
        names.append(constant)
        body += ["", f"# --- {name}: {imported.kind} {', '.join(str(s) for s in imported.sources)}"]
        if imported.settings:
            body += ["# machine paths are not recipe values; put these in gaze.toml:"]
            body += [f"#   {line}" for line in settings_lines(imported.settings)]
        body += ["# every key of the source and what became of it:"]
        body += [f"#   {line}" for line in note_lines(imported.notes)]
        body += [f"#   {ABSENT[imported.kind]}"]
        body += [f"{constant} = evolve(", f"    {variable},"]
        for group, values in imported.groups.items():
            body.append(f"    {group}={{")
            body += [f"        {code(key)}: {code(value)}," for key, value in values.items()]
            body.append("    },")
        extra = tuple(imported.extra_args.items())
        body += [").replace(", f"    name={code(name)},", f"    description={code(description)},",
                 f"    extra_args={code(extra)},", ")"]
    tail = ["", "", f"RECIPES = ({', '.join(names)},)", ""]
    return "\n".join(head + body + tail)
