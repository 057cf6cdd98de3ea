"""kohya_ss GUI configurations (.json, its LoRA keys) read as the sd-scripts arguments kohya_ss passes.

kohya_gui/lora_gui.py train_model: `max_resolution` becomes `resolution`, `lr_warmup` percent a
fraction, `optimizer` `optimizer_type`, `xformers` the attention flag, zero learning rates the
train-only flags, and "", False, None and 0 are dropped, so sd-scripts' defaults apply. The arguments
are then read like an sd-scripts config (wrapper.kohya.importer), every key with its Note.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wrapper.errors import ConfigError
from wrapper.kohya import prompt_lines
from wrapper.kohya.importer import (
    DERIVED,
    DROPPED,
    FIELDS,
    GAZE,
    KOHYA_SS,
    OFF,
    OPTIONAL,
    SETTINGS,
    Imported,
    Note,
    Reader,
    Verdict,
    _dataset_notes,
    _imported,
    _load_toml,
)

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
