"""Rendering recipes to sd-scripts files: golden files, value types, and the readback proof."""

from __future__ import annotations

from pathlib import Path

import pytest
import toml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from recipes import builtin_registry
from recipes.glitches import MODIFIERS
from wrapper.errors import ConfigError
from wrapper.kohya import configs, interface
from wrapper.kohya.prompt_lines import file_lines, split_line, text_problems
from wrapper.kohya.render import Places, render_prompts
from wrapper.recipe import SamplePrompt, evolve

GOLDEN = Path(__file__).parent / "golden"
registry = builtin_registry()
GOLDEN_SPECS = [*registry.recipes, "sd15-standard+no-bucket+high-lr=3e-4", "sdxl-standard+train-text-encoder+crop-flip"]


def places(root: Path = Path("/data/run")) -> Places:
    return Places(
        image_dir=Path("/data/fashion"), model=Path("/models/base.safetensors"), output_dir=root / "output",
        logging_dir=root / "logs", sample_prompts=root / "sample_prompts.txt", output_name="lora",
    )


def rendered(spec: str) -> configs.Rendered:
    return configs.render(registry.resolve(spec), places(), Path("/data/run"))


@pytest.mark.parametrize("spec", GOLDEN_SPECS)
def test_golden_files(spec: str, update_golden: bool):
    folder = GOLDEN / spec
    for name, text in rendered(spec).texts().items():
        path = folder / name
        if update_golden:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert path.read_text(encoding="utf-8") == text, f"{path} differs; rerun with --update-golden and review"


@pytest.mark.parametrize("spec", [*registry.recipes, *(f"sdxl-standard+{m.name}" for m in MODIFIERS),
                                  *(f"sd15-standard+{m.name}" for m in MODIFIERS)])
def test_rendered_configs_pass_the_committed_table(spec: str):
    r = rendered(spec)
    assert configs.check(r.script, r.arguments, r.dataset, checkout=None, where=Path("/data/run")) == []


def test_values_have_the_types_sd_scripts_expects():
    r = rendered("sd15-standard+caption-dropout")
    args = toml.loads(r.texts()["config.toml"])
    flat = interface.flatten(args)
    assert isinstance(flat["learning_rate"], float) and isinstance(flat["network_alpha"], float)
    assert isinstance(flat["max_train_steps"], int) and flat["network_train_unet_only"] is True
    assert "text_encoder_lr" not in flat  # frozen text encoder: no LR group at all
    dataset = toml.loads(r.texts()["dataset.toml"])["datasets"][0]
    assert dataset["resolution"] == [512, 768]
    subset = dataset["subsets"][0]
    assert subset["caption_extension"] == ".txt"  # sd-scripts' own default is .caption
    assert isinstance(subset["caption_dropout_rate"], float) and subset["caption_dropout_rate"] == 0.1


def test_sdxl_caches_what_it_can_and_only_that():
    flat = interface.flatten(rendered("sdxl-standard").arguments)
    assert flat["cache_text_encoder_outputs"] and flat["cache_latents"] and flat["no_half_vae"]
    flat = interface.flatten(rendered("sdxl-standard+train-text-encoder+crop-flip").arguments)
    assert not flat["cache_text_encoder_outputs"] and not flat["cache_latents"]
    assert flat["text_encoder_lr"] == 5e-5 and not flat["network_train_unet_only"]
    flat = interface.flatten(rendered("sdxl-standard+caption-dropout").arguments)
    assert not flat["cache_text_encoder_outputs"]


def test_deliberate_glitches_are_labelled_in_the_files():
    texts = rendered("sd15-standard+mismatched-base=other+high-lr").texts()
    assert "# deliberate glitches: mismatched-base=other, high-lr=2e-4, mismatched base 'other'" in texts["config.toml"]
    comment = interface.flatten(toml.loads(texts["config.toml"]))["training_comment"]
    assert "deliberate glitches" in comment and "mismatched base model 'other'" in comment


def test_untypable_prompts_are_refused_not_mangled():
    recipe = evolve(registry.recipes["sd15-standard"], sampling={"prompts": (
        SamplePrompt(prompt="a coat --n not negative"), SamplePrompt(prompt="two\nlines"),
        SamplePrompt(prompt="n ice coat"))})
    with pytest.raises(ConfigError) as err:
        configs.render(recipe, places(), Path("/x"))
    text = str(err.value)
    assert "' --'" in text and "line break" in text and "starts like a prompt option" in text


prompt_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=50)


@settings(max_examples=300, deadline=None)
@given(prompt_text, st.one_of(st.just(""), prompt_text), st.floats(0.5, 30).map(lambda x: round(x, 3)))
@example("0", "--", 7.0)  # a negative starting with "--" meets the "n " before it as " --"
@example("a -", "b -", 7.0)
@example("a coat", "s 20 blurry", 7.0)  # the trainer's `n (.+)` takes a negative that starts like an option
def test_sample_prompts_read_back_exactly_or_are_refused(prompt: str, negative: str, cfg: float):
    base = registry.recipes["sd15-standard"]
    recipe = evolve(base, sampling={"prompts": (SamplePrompt(prompt=prompt, negative=negative, seed=7),),
                                    "cfg": cfg})
    if text_problems(prompt) + (text_problems(negative, negative=True) if negative else []):
        with pytest.raises(ConfigError):
            render_prompts(recipe)
        return
    [(_, line)] = file_lines(render_prompts(recipe))
    read = split_line(line)
    assert read.prompt == prompt and read.options.get("n", "") == negative
    assert float(read.options["l"]) == pytest.approx(cfg)
    assert [read.options[k] for k in ("w", "h", "d", "s", "ss")] == ["512", "768", "7", "20", "dpmsolver++"]


def test_hand_written_prompt_files_are_checked_for_options_in_the_prompt(tmp_path):
    """Regression: 's curve road' was refused for starting with an option word; the trainer's
    `s (\\d+)` does not match it, so only prompts it really takes an option from are reported."""
    path = tmp_path / "sample_prompts.txt"
    path.write_text("# w 5 is a comment\ns curve road --w 512\r\n\n  w 512 wide shot --n x\n", encoding="utf-8")
    [problem] = configs.prompt_file_problems(path)
    assert problem.startswith(f"{path}:4: prompt 'w 512 wide shot' starts like a prompt option (--w 512)")


def test_recipe_rules_stop_impossible_runs():
    base = registry.recipes["sd15-standard"]
    no_buckets = evolve(base, data={"buckets": {"enabled": False}})
    with pytest.raises(ConfigError, match="buckets off with portrait and landscape crops"):
        configs.render(no_buckets, places(), Path("/x"))
    with pytest.raises(ConfigError, match="buckets off with uncropped images"):
        configs.render(evolve(no_buckets, prep={"mode": "uncropped"}), places(), Path("/x"))
    with pytest.raises(ConfigError, match="max_token_length = 100"):
        configs.render(evolve(base, training={"max_token_length": 100}), places(), Path("/x"))


def test_paths_with_any_characters_read_back_exactly(tmp_path: Path):
    odd = Path('/data/Spring "24"\\raw\tset/ü €/it\'s')
    p = Places(image_dir=odd, model=odd / "m.safetensors", output_dir=odd, logging_dir=odd,
               sample_prompts=odd / "p.txt", output_name="x")
    r = configs.render(registry.recipes["sd15-standard"], p, odd)
    dataset = toml.loads(r.texts()["dataset.toml"])
    assert dataset["datasets"][0]["subsets"][0]["image_dir"] == str(odd)
    assert interface.flatten(toml.loads(r.texts()["config.toml"]))["pretrained_model_name_or_path"] == str(
        odd / "m.safetensors")


def test_each_image_folder_becomes_a_subset():
    p = places()
    p = p.__class__(**{**p.__dict__, "more_image_dirs": (Path("/data/fashion/looks"),)})
    subsets = configs.render(registry.recipes["sd15-standard"], p, Path("/x")).dataset["datasets"][0]["subsets"]
    assert [s["image_dir"] for s in subsets] == ["/data/fashion", "/data/fashion/looks"]
    assert subsets[0] | {"image_dir": ""} == subsets[1] | {"image_dir": ""}


def test_extra_args_cannot_override_what_the_recipe_sets():
    recipe = registry.resolve("sd15-standard").replace(
        extra_args=(("output_dir", "/elsewhere"), ("learning_rate", 1.0), ("max_train_steps", 5),
                    ("scale_weight_norms", 1.0), ("scale_weight_norms", 2.0)))
    with pytest.raises(ConfigError) as err:
        configs.render(recipe, places(), Path("/cfg"))
    text = str(err.value)
    assert "extra_args sets 'output_dir' = '/elsewhere', which gaze already sets from the run folder" in text
    assert "'learning_rate' = 1.0, which gaze already sets from optimizer.unet_lr; change that instead" in text
    assert "'max_train_steps' = 5, which gaze already sets from training.max_train_steps" in text
    assert "extra_args sets 'scale_weight_norms' twice" in text


def test_every_rendered_argument_is_managed():
    """The table of managed arguments covers every key the renderer can write (so none can be overridden)."""
    from wrapper.kohya.rules import managed_by

    full = evolve(registry.resolve("sdxl-standard+train-text-encoder"),
                  training={"v2": True, "no_half_vae": True, "full_bf16": True, "noise_offset": 0.1,
                            "min_snr_gamma": 5.0, "clip_skip": 2, "save_every_n_steps": 100, "max_token_length": 150},
                  network={"dropout": 0.1, "args": ("conv_dim=4",)}, optimizer={"args": ("weight_decay=0.1",)})
    keys = {k for table in configs.render(full, places(), Path("/cfg")).arguments.values() for k in table}
    assert [k for k in sorted(keys) if managed_by(k) is None] == []
    assert managed_by("scale_weight_norms") is None and managed_by("network_dim") == "network.dim"


def test_part_dropout_renders_sentences_as_the_parts():
    subset = rendered("sd15-standard+caption-dropout=part:0.3").dataset["datasets"][0]["subsets"][0]
    assert (subset["caption_tag_dropout_rate"], subset["caption_separator"]) == (0.3, ". ")
    assert subset["caption_dropout_rate"] == 0.0
    flat = interface.flatten(rendered("sdxl-standard+caption-dropout=part:0.3").arguments)
    assert not flat["cache_text_encoder_outputs"]  # sentences change between epochs: nothing cached


def test_an_empty_caption_separator_is_refused():
    recipe = evolve(registry.recipes["sd15-standard"], data={"caption_separator": ""})
    with pytest.raises(ConfigError, match="str.split, which refuses an empty separator"):
        configs.render(recipe, places(), Path("/x"))


def test_dataset_keys_cannot_come_through_extra_args():
    """dataset.toml sets them for every subset and wins over the arguments file: an extra_args entry would be
    silently ignored by sd-scripts."""
    from wrapper.kohya.rules import managed_by

    assert managed_by("flip_aug") == "data.flip" and managed_by("caption_separator") == "data.caption_separator"
    assert managed_by("train_batch_size") == "training.batch_size" and managed_by("resolution") == "data.resolution"
    assert managed_by("caption_prefix") is None and managed_by("keep_tokens_separator") is None


def test_sample_prompts_are_written_for_epoch_sampling_too():
    recipe = evolve(registry.recipes["sd15-standard"], sampling={"every_n_steps": None})
    sampling = configs.render(recipe, places(), Path("/x")).arguments["sampling"]
    assert "sample_every_n_steps" not in sampling and sampling["sample_prompts"].endswith("sample_prompts.txt")
