"""Rendering recipes to sd-scripts files: golden files, value types, and the readback proof."""

from __future__ import annotations

from pathlib import Path

import pytest
import toml

from recipes import builtin_registry
from recipes.glitches import MODIFIERS
from wrapper.errors import ConfigError
from wrapper.kohya import configs, interface
from wrapper.kohya.render import Places
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
