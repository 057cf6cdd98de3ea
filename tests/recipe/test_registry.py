"""The recipe model, the registry, modifiers and sweeps."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from recipes import GLITCH_TARGETS, builtin_registry, load_registry
from recipes.glitches import MODIFIERS
from recipes.standard import BASELINES, SD15_STANDARD, SDXL_STANDARD
from wrapper.errors import RecipeError
from wrapper.kohya import rules
from wrapper.recipe import evolve, recipe_problems, validate
from wrapper.recipe.registry import Modifier, Registry, load_recipe_file, sweep

registry = builtin_registry()


def test_log_facts_are_in_the_baselines():
    assert SDXL_STANDARD.prep.portrait == (832, 1216) and SDXL_STANDARD.prep.landscape == (1216, 832)
    assert SDXL_STANDARD.data.resolution == (832, 1216) and SDXL_STANDARD.data.buckets.max_reso == 1216
    assert SDXL_STANDARD.training.max_train_steps == 8000
    assert (SDXL_STANDARD.sampling.sampler, SDXL_STANDARD.sampling.steps, SDXL_STANDARD.sampling.cfg) == (
        "dpm++2m", 20, 7.0)
    negatives = {bool(p.negative) for p in SDXL_STANDARD.sampling.prompts}
    assert negatives == {True, False}  # with and without the negative prompt
    assert SD15_STANDARD.network.dim == 128
    assert registry.resolve("sd15-uncropped").prep.mode == "uncropped"


@pytest.mark.parametrize("base", [r.name for r in BASELINES])
@pytest.mark.parametrize("modifier", [m.name for m in MODIFIERS])
def test_every_modifier_applies_to_every_baseline(base, modifier):
    recipe = registry.resolve(f"{base}+{modifier}")
    assert recipe.baseline == base
    assert recipe.modifiers[0].startswith(modifier)
    assert recipe.name.startswith(f"{base}+{modifier}")
    assert recipe != registry.recipes[base]
    assert recipe_problems(recipe) == []


def test_modifier_effects():
    r = registry.resolve("sd15-standard+no-bucket+high-lr=3e-4")
    assert r.name == "sd15-standard+no-bucket+high-lr=3e-4"
    assert not r.data.buckets.enabled and r.prep.mode == "stretch" and r.prep.stretch_to == r.data.resolution
    assert r.optimizer.unet_lr == 3e-4 and r.optimizer.text_encoder_lr == pytest.approx(1.5e-4)
    assert r.glitches == ("no-bucket", "high-lr=3e-4")
    assert registry.resolve("sd15-standard+high-lr").optimizer.unet_lr == 2e-4
    assert registry.resolve("sd15-standard+lr").optimizer.unet_lr == 5e-5
    assert registry.resolve("sd15-standard+steps").training.max_train_steps == 1200
    assert registry.resolve("sd15-standard+dim").network.dim == 192
    assert registry.resolve("sd15-standard+dim").network.alpha == 96.0
    assert registry.resolve("sd15-standard+lr").glitches == ()
    tweaked = registry.resolve("sdxl-standard+jpeg-inject=0.4:20")
    assert (tweaked.prep.jpeg_fraction, tweaked.prep.jpeg_quality) == (0.4, 20)
    assert registry.resolve("sd15-standard+mismatched-base=sdxl").base_model == "sdxl"
    assert registry.resolve("sdxl-standard+train-text-encoder").training.train_text_encoder
    crop = registry.resolve("sd15-standard+crop-flip")
    assert crop.data.random_crop and crop.data.flip
    assert registry.resolve("sd15-standard+caption-dropout=0.3").data.caption_dropout_rate == 0.3
    assert registry.resolve("sd15-standard+overtrain").training.max_train_steps == 10000


def test_modifiers_combine_in_order_and_the_baseline_is_untouched():
    before = registry.recipes["sd15-standard"]
    combined = registry.resolve("sd15-standard+crop-flip+caption-dropout+dim=64+overtrain=6000")
    assert combined.modifiers == ("crop-flip", "caption-dropout=0.1", "dim=64", "overtrain=6000")
    assert combined.glitches == ("crop-flip", "caption-dropout=0.1", "overtrain=6000")
    assert registry.recipes["sd15-standard"] is before and before.network.dim == 128


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sd15-standrad", "did you mean 'sd15-standard'"),
        ("sd15-standard+no-buket", "did you mean 'no-bucket'"),
        ("sd15-standard+uncropped+no-bucket", "conflict"),
        ("sd15-standard+lr+high-lr", "conflict"),
        ("sd15-standard+steps+overtrain", "conflict"),
        ("sd15-standard+dim+dim=64", "given twice"),
        ("sd15-standard+crop-flip=2", "takes no value"),
        ("sd15-standard+high-lr=fast", "not a valid value"),
        ("sd15-standard+high-lr=1e-4", "start at 2e-4"),
        ("sd15-standard+overtrain=3000", "more than 5000"),
        ("sd15-standard+lr=-1e-4", "optimizer.unet_lr"),
        ("sd15-standard+dim=0", "network.dim"),
        ("sd15-standard+steps=0", "max_train_steps"),
        ("sd15-standard+caption-dropout=1.5", "caption_dropout_rate"),
        ("sd15-standard+caption-dropout=part:1.5", "caption_tag_dropout_rate"),
        ("sd15-standard+caption-dropout=tag:0.2", "not a valid value"),
        ("sd15-standard+caption-dropout=part:0.1,part:0.2", "not a valid value"),
        ("sd15-standard+jpeg-inject=0.5:0", "jpeg_quality"),
    ],
)
def test_bad_specs_are_explained(spec, message):
    with pytest.raises(RecipeError, match=message):
        registry.resolve(spec)


def test_validation_lists_every_problem_at_once():
    bad = evolve(SD15_STANDARD, training={"max_train_steps": 0}, network={"dim": -1},
                 optimizer={"unet_lr": 0.0}, sampling={"sampler": "dpm++ 2m karras"})
    with pytest.raises(RecipeError) as err:
        validate(bad)
    text = str(err.value)
    for field in ("max_train_steps", "network.dim", "optimizer.unet_lr"):
        assert field in text
    # sampler names are sd-scripts' knowledge: checked with the rules every rendering applies
    assert any(p.startswith("sampling.sampler: ") for p in rules.recipe_rules(bad))


def test_optional_and_union_fields_are_type_checked():
    bad = evolve(SD15_STANDARD, training={"save_every_n_steps": "500", "gradient_checkpointing": 1,
                                          "noise_offset": "0.1"},
                 prep={"square": (512, "512")}, network={"dropout": True})
    text = "\n".join(recipe_problems(bad))
    assert "training.save_every_n_steps = '500': expected an integer or none" in text
    assert "training.gradient_checkpointing = 1: expected true or false or none" in text
    assert "training.noise_offset = '0.1': expected a number or none" in text
    assert "prep.square = (512, '512'): expected a tuple of an integer or none" in text
    assert "network.dropout = True: expected a number or none" in text
    assert recipe_problems(SD15_STANDARD) == []


def test_wrong_types_are_reported():
    bad = evolve(SD15_STANDARD, training={"max_train_steps": "8000", "mixed_precision": "fp32"},
                 data={"flip": "yes"})
    problems = recipe_problems(bad)
    assert any("max_train_steps = '8000': expected an integer" in p for p in problems)
    assert any("mixed_precision = 'fp32': expected one of" in p for p in problems)
    assert any("data.flip = 'yes': expected true or false" in p for p in problems)


def test_registry_refuses_duplicates():
    reg = Registry()
    reg.add_recipe(SD15_STANDARD)
    with pytest.raises(RecipeError, match="registered twice"):
        reg.add_recipe(SD15_STANDARD)
    reg.add_modifier(MODIFIERS[0])
    with pytest.raises(RecipeError, match="registered twice"):
        reg.add_modifier(Modifier(MODIFIERS[0].name, MODIFIERS[0].apply, "again"))


def test_glitch_targets_resolve_and_are_labelled():
    for target, spec in GLITCH_TARGETS.items():
        recipe = registry.resolve(target)
        assert recipe.glitches, target
        assert recipe.name.startswith(spec)


def test_sweep_names_are_deterministic_and_readable():
    runs = sweep("sd15-standard", ["no-bucket", "high-lr=3e-4", "no-bucket", "crop-flip+caption-dropout"])
    assert runs == ["sd15-standard", "sd15-standard+no-bucket", "sd15-standard+high-lr=3e-4",
                    "sd15-standard+crop-flip+caption-dropout"]
    names = [registry.resolve(s).name for s in runs]
    assert names[-1] == "sd15-standard+crop-flip+caption-dropout=0.1"
    assert len(set(names)) == len(names)


def test_all_pairs_of_compatible_modifiers_resolve():
    for a, b in itertools.combinations([m for m in MODIFIERS], 2):
        if a.name in b.conflicts or b.name in a.conflicts:
            continue
        assert recipe_problems(registry.resolve(f"sd15-standard+{a.name}+{b.name}")) == []


def test_user_recipe_file(tmp_path: Path):
    good = tmp_path / "mine.py"
    good.write_text(
        "from wrapper.recipe import evolve\nfrom recipes.standard import SD15_STANDARD\n"
        "RECIPES = (evolve(SD15_STANDARD, network={'dim': 64}).replace(name='sd15-dim64', description='d'),)\n"
    )
    reg = load_registry(good)
    assert reg.resolve("sd15-dim64+high-lr").network.dim == 64

    typo = tmp_path / "typo.py"
    typo.write_text(
        "from wrapper.recipe import Network\nfrom recipes.standard import SD15_STANDARD\n\n"
        "RECIPES = (SD15_STANDARD.replace(name='x', network=Network(dimm=192)),)\n"
    )
    with pytest.raises(RecipeError, match=r"typo.py:4: Network has no field 'dimm' \(did you mean 'dim'\?\)"):
        load_registry(typo)
    clash = tmp_path / "clash.py"
    clash.write_text("from recipes.standard import SD15_STANDARD\nRECIPES = (SD15_STANDARD,)\n")
    with pytest.raises(RecipeError, match="registered twice"):
        load_registry(clash)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("raise RuntimeError('boom')\n", r"bad.py:1: importing the recipe file raised RuntimeError: boom"),
        ("RECIPES = (\n", r"bad.py:1: not valid Python: '\(' was never closed"),
        ("RECIPES = 'sd15-standard'\n", r"bad.py: RECIPES is a str; expected a tuple or list of Recipe"),
        ("RECIPES = ('sd15-standard',)\n", r"bad.py: RECIPES\[0\] is a str; expected a Recipe"),
        ("MODIFIERS = 3\n", r"bad.py: MODIFIERS is a int; expected a tuple or list of Modifier"),
        ("import no_such_module_here\n", r"bad.py:1: importing the recipe file raised ModuleNotFoundError"),
    ],
)
def test_a_broken_recipe_file_is_one_clear_error(tmp_path, source, message):
    bad = tmp_path / "bad.py"
    bad.write_text(source)
    with pytest.raises(RecipeError, match=message):
        load_recipe_file(builtin_registry(), bad)
    with pytest.raises(RecipeError, match="is a folder, not a Python file"):
        load_recipe_file(builtin_registry(), tmp_path)


@pytest.mark.parametrize("spec", ["sd15-standard+high-lr=", "sd15-standard+high-lr= ", "sd15-standard+dim="])
def test_an_empty_modifier_value_is_refused_not_defaulted(spec):
    with pytest.raises(RecipeError, match="has an empty value after '='"):
        builtin_registry().resolve(spec)


def test_numbers_sd_scripts_cannot_hold_are_refused():
    huge = evolve(SD15_STANDARD, training={"max_train_steps": 10**22}, optimizer={"unet_lr": float("inf")},
                  network={"args": ()})
    text = "\n".join(recipe_problems(huge))
    assert "training.max_train_steps: 10000000000000000000000 is beyond what sd-scripts can hold" in text
    assert "optimizer.unet_lr: inf is beyond" in text
    extra = SD15_STANDARD.replace(extra_args=(("max_data_loader_n_workers", 2**40),))
    assert any("recipe.extra_args: 1099511627776 is beyond" in p for p in recipe_problems(extra))
    with pytest.raises(RecipeError, match="is beyond what sd-scripts can hold"):
        builtin_registry().resolve("sd15-standard+steps=99999999999999999999999")
