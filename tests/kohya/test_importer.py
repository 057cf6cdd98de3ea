"""`gaze import`: kohya_ss presets and sd-scripts configs in, recipes out; `gaze config` then writes what
sd-scripts would have read from the original, for every key that was mapped, and lists the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import toml
from click.testing import CliRunner
from conftest import write_checkpoint

from wrapper.cli import main
from wrapper.errors import ConfigError
from wrapper.kohya import importer, interface, kohya_ss, recipe_module
from wrapper.kohya.prompt_lines import file_lines, split_line

DATA = Path(__file__).parent / "data"
KOHYA_SS = ["kohya_ss-sd15-buckets", "kohya_ss-sd15-locon-nobucket", "kohya_ss-sdxl-buckets",
            "kohya_ss-sdxl-te-nobucket"]
SD_SCRIPTS = [("sd-scripts-sd15.config", "sd-scripts-sd15.dataset"),
              ("sd-scripts-sd15.config", "sd-scripts-sd15-separators.dataset"),
              ("sd-scripts-sdxl.config", "sd-scripts-sdxl.dataset")]
CASES = [(name,) for name in KOHYA_SS] + SD_SCRIPTS


def files(case: tuple[str, ...]) -> list[Path]:
    return [DATA / f"{name}{'.json' if name.startswith('kohya_ss') else '.toml'}" for name in case]


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A folder with two captioned photos (.txt and .caption captions) and a checkpoint of each family."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    for name, size in (("portrait", (512, 768)), ("landscape", (768, 512))):
        Image.new("RGB", size, (120, 80, 40)).save(images / f"{name}.png")
        for extension in (".txt", ".caption"):
            (images / f"{name}{extension}").write_text(f"a {name} photo of a coat. Studio light.", encoding="utf-8")
    for family in ("sd15", "sdxl"):
        write_checkpoint(tmp_path / f"{family}.safetensors", family)
    return tmp_path


def gaze(*args: str):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def import_then_config(case: tuple[str, ...], root: Path) -> dict:
    """`gaze import` the case, register the module in gaze.toml, `gaze config` it; what was written."""
    imported = gaze("import", *files(case), "--out", root / "mine.py", "--name", "mine")
    assert imported.exit_code == 0, imported.output
    family = "sdxl" if "sdxl" in case[0] else "sd15"
    settings = f'recipes = "mine.py"\ndataset = "images"\n[models]\n{family} = "{family}.safetensors"\n'
    (root / "gaze.toml").write_text(settings)
    configured = gaze("config", "mine", "--out", root / "cfg")
    assert configured.exit_code == 0, configured.output
    recipe = json.loads(gaze("show", "mine", "--json").output)
    tables = toml.load(root / "cfg" / "config.toml")
    return {"output": imported.output, "arguments": interface.flatten(tables), "family": family, "recipe": recipe,
            "dataset": toml.load(root / "cfg" / "dataset.toml"), "module": (root / "mine.py").read_text(),
            "prompts": (root / "cfg" / "sample_prompts.txt").read_text(encoding="utf-8")}


def original(case: tuple[str, ...]) -> tuple[dict, dict | None, list[str]]:
    """What sd-scripts reads from the original: arguments, dataset config, sample prompt lines."""
    if case[0].startswith("kohya_ss"):
        expected = json.loads((DATA / f"{case[0]}.expected.json").read_text())
        arguments = {k: v for k, v in expected.items() if not k.startswith("_")}
        return arguments, None, arguments.pop("sample_prompts", [])
    return interface.flatten(toml.load(files(case)[0])), toml.load(files(case)[1]), []


def as_read(arguments: dict, dataset: dict | None, family: str, keys: set[str]) -> dict:
    """Every mapped setting the way sd-scripts will use it (dataset config first, then arguments, defaults)."""
    table = interface.committed_interface()["scripts"][importer.SCRIPT[family]]
    read = importer.effective(arguments, dataset, table)
    out = {key: read(key) for key in keys}
    for key, value in out.items():
        if table.get(key, {}).get("kind") == "storetrue":
            out[key] = bool(value)
    out |= importer.learning_rates(read)
    out["resolution"] = importer._resolution(read("resolution"))
    out["max_token_length"] = read("max_token_length") or 75
    for key in ("network_args", "optimizer_args"):
        out[key] = list(read(key) or [])
    warmup = read("lr_warmup_steps") or 0
    out["lr_warmup_steps"] = int(warmup * read("max_train_steps")) if isinstance(warmup, float) else warmup
    if not read("enable_bucket"):
        for key in ("min_bucket_reso", "max_bucket_reso", "bucket_reso_steps", "bucket_no_upscale"):
            out.pop(key, None)
    if not read("validation_split"):
        out.pop("validation_seed", None)
    out.pop("clip_skip", None) if family == "sdxl" else None
    return out


MAPPED = {*importer.FIELDS, *importer.OPTIONAL, "seed", "save_precision", "sample_every_n_steps"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: "+".join(c))
def test_import_then_config_gives_what_sd_scripts_read_from_the_original(case, workdir):
    done = import_then_config(case, workdir)
    arguments, dataset, prompt_lines = original(case)
    family = done["family"]
    keys = MAPPED | set(done["recipe"]["extra_args"] and dict(done["recipe"]["extra_args"]))
    if family == "sdxl":
        keys.add("cache_text_encoder_outputs")
    before = as_read(arguments, dataset, family, keys)
    after = as_read(done["arguments"], done["dataset"], family, keys)
    for key in ("seed", "save_precision"):  # left open in the source: listed, the recipe keeps the baseline's
        if before[key] is None:
            assert f"{key} = None: " in done["output"]
            before.pop(key), after.pop(key)
    assert {k: v for k, v in after.items() if before[k] != v} == {}
    assert done["recipe"]["training"]["attention"] == importer.attention(
        importer.effective(arguments, dataset, interface.committed_interface()["scripts"][importer.SCRIPT[family]]))
    if case[0].startswith("kohya_ss"):  # every argument kohya_ss passes is compared, or is of no concern here
        unchecked = set(arguments) - keys - {"learning_rate", "unet_lr", "text_encoder_lr", "network_train_unet_only",
                                             "resolution", "train_batch_size", "sdpa", "xformers", "mem_eff_attn",
                                             "max_token_length", "network_args", "optimizer_args", "lr_warmup_steps"}
        assert unchecked <= {"clip_skip", "sample_sampler"}, unchecked  # SDXL ignores clip_skip; the sampler: above
    rendered = [split_line(line) for _, line in file_lines(done["prompts"])]
    assert [(r.prompt, r.options) for r in rendered] == [
        (r.prompt, r.options | {"ss": r.options.get("ss", arguments.get("sample_sampler", "ddim"))})
        for r in (split_line(line) for line in prompt_lines)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "+".join(c))
def test_every_key_of_the_source_is_listed(case, workdir):
    done = import_then_config(case, workdir)
    listed = done["output"] + done["module"]
    if case[0].startswith("kohya_ss"):
        keys = json.loads(files(case)[0].read_text())
    else:
        keys = dict(toml.load(files(case)[0]))
        dataset = toml.load(files(case)[1])
        keys |= dataset.get("general", {})
        for table in dataset["datasets"]:
            keys |= {k: v for k, v in table.items() if k != "subsets"}
            for subset in table["subsets"]:
                keys |= subset
    missing = [key for key in keys if f"  {key} = " not in listed and f"] {key} = " not in listed]
    assert missing == []
    assert "# every key of the source and what became of it:" in done["module"]


def test_what_cannot_be_carried_is_listed_with_its_reason(workdir):
    locon = import_then_config(("kohya_ss-sd15-locon-nobucket",), workdir)["output"]
    block = locon.split("NOT REPRESENTABLE", 1)[1]
    assert "reg_data_dir = '/home/me/data/regularisation': regularisation images" in block
    assert "vae = '/models/vae-ft-mse.safetensors': a machine path" in block
    assert "epoch = 10: extra_args max_train_epochs" in locon
    assert ("additional_parameters = '--max_grad_norm=0.5 --zero_terminal_snr': read as the arguments max_grad_norm, "
            "zero_terminal_snr") in locon


def test_sd_scripts_docs_arguments_that_do_not_exist_are_listed(workdir):
    output = import_then_config(SD_SCRIPTS[2], workdir)["output"]
    block = output.split("NOT REPRESENTABLE", 1)[1]
    assert "text_encoder_lr1 = 1e-05: not an argument of sdxl_train_network.py" in block
    assert "datasets[1] resolution = 768: gaze trains one dataset" in block


def test_machine_paths_go_to_gaze_toml_not_the_recipe(workdir):
    done = import_then_config(("kohya_ss-sdxl-buckets",), workdir)
    tail = done["output"].split("put in gaze.toml:", 1)[1]
    assert 'recipes = "' in tail and '  sdxl = "/models/sd_xl_base_1.0.safetensors"' in tail
    assert 'dataset = "/home/me/data/fashion"' in tail
    assert "/models/" not in done["module"].split("RECIPES")[0].split(" = evolve(")[1]


def test_the_module_derives_from_the_nearest_baseline_and_takes_every_modifier(workdir):
    done = import_then_config(("kohya_ss-sdxl-te-nobucket",), workdir)
    assert "from recipes.standard import SDXL_STANDARD" in done["module"]
    result = gaze("show", "mine+caption-dropout=part:0.3+high-lr=3e-4")
    assert result.exit_code == 0, result.output
    assert "data.caption_tag_dropout_rate: 0.0 -> 0.3" in result.output
    assert gaze("config", "mine+no-bucket", "--out", workdir / "nobucket").exit_code == 0
    from recipes import load_registry
    from recipes.glitches import MODIFIERS
    from wrapper.kohya.rules import recipe_rules
    from wrapper.recipe import recipe_problems

    registry = load_registry(workdir / "mine.py")
    for modifier in MODIFIERS:
        recipe = registry.resolve(f"mine+{modifier.name}")
        assert recipe_problems(recipe) + recipe_rules(recipe) == [], modifier.name


def test_refusals(workdir):
    (workdir / "flux.json").write_text(json.dumps({"flux1_checkbox": True, "network_dim": 8}))
    result = gaze("import", workdir / "flux.json")
    assert result.exit_code == 1 and "a flux1 configuration: gaze trains SD1.x, SD2.x and SDXL LoRAs" in result.output
    (workdir / "mine.py").write_text("x")
    result = gaze("import", files(("kohya_ss-sd15-buckets",))[0], "--out", workdir / "mine.py")
    assert result.exit_code == 1 and "exists; choose a new file" in result.output
    result = gaze("import", files(("sd-scripts-sd15.config",))[0], "--out", workdir / "new.py")
    assert result.exit_code == 1 and "pass the dataset.toml too" in result.output
    assert not (workdir / "new.py").exists()


def test_a_configuration_sd_scripts_would_refuse_is_refused_with_its_reason(workdir, tmp_path):
    config = tmp_path / "cached.toml"
    config.write_text((DATA / "sd-scripts-sdxl.config.toml").read_text().replace("network_train_unet_only = true", ""))
    result = gaze("import", config, DATA / "sd-scripts-sdxl.dataset.toml", "--out", workdir / "x.py")
    assert result.exit_code == 1
    assert "cache_text_encoder_outputs needs network_train_unet_only" in result.output
    assert not (workdir / "x.py").exists()


@pytest.mark.parametrize(("text", "name"), [("SDXL - LoRA AI_characters standard v1.1.json",
                                             "sdxl-lora-ai-characters-standard-v1-1"), ("a.toml", "a")])
def test_recipe_names_from_file_names(text, name):
    assert recipe_module.recipe_name(text) == name


def test_kohya_ss_translation_follows_its_rules():
    arguments, _ = kohya_ss.translate_gui({
        "max_resolution": "768,512", "learning_rate": 1e-4, "unet_lr": 0, "text_encoder_lr": 2e-5, "lr_warmup": 10,
        "optimizer": "Prodigy", "xformers": "sdpa", "LoRA_type": "Standard", "rank_dropout": 0.1,
        "network_args": 'algo="x"', "seed": "", "max_train_steps": "100", "caption_dropout_rate": 0})
    assert arguments["resolution"] == "768,512" and arguments["optimizer_type"] == "Prodigy"
    assert arguments["network_train_text_encoder_only"] is True and "network_train_unet_only" not in arguments
    assert arguments["text_encoder_lr"] == [2e-5, 2e-5] and "unet_lr" not in arguments
    assert arguments["lr_warmup_steps"] == 0.1 and arguments["sdpa"] is True
    assert arguments["network_args"] == ["algo=x", "rank_dropout=0.1"]
    assert "seed" not in arguments and "caption_dropout_rate" not in arguments


def test_unreadable_files_are_one_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not a kohya_ss configuration"):
        recipe_module.read_files([bad])
    with pytest.raises(ConfigError, match="is a folder; expected kohya_ss .json or sd-scripts .toml"):
        recipe_module.read_files([tmp_path])
    other = tmp_path / "preset.yaml"
    other.write_text("a: 1")
    with pytest.raises(ConfigError, match="expected kohya_ss .json or sd-scripts .toml"):
        recipe_module.read_files([other])


READER = r"""
import json, sys
import train_network, sdxl_train_network
from library import config_util, train_util
jobs_file, out_file = sys.argv[1:3]
out = {}
for job in json.load(open(jobs_file)):
    module = sdxl_train_network if job["script"].startswith("sdxl") else train_network
    parser = module.setup_parser()
    sys.argv = ["train", "--config_file", job["config"]]  # read_config_from_file re-parses sys.argv
    args = train_util.read_config_from_file(parser.parse_args(), parser)
    train_util.prepare_dataset_args(args, True)  # as train_network.py does before the blueprint
    user = config_util.load_user_config(job["dataset"]) if job["dataset"] else {
        "datasets": [{"subsets": [{"image_dir": "/images"}]}]}  # what kohya_ss's own folder holds: one subset
    sanitizer = config_util.ConfigSanitizer(True, True, False, True)  # as train_network.py builds it
    blueprint = config_util.BlueprintGenerator(sanitizer).generate(user, args)
    dataset = blueprint.dataset_group.datasets[0]
    plain = (str, int, float, bool, list, tuple, type(None))
    values = {k: v for k, v in vars(args).items() if isinstance(v, plain)}
    for params in (dataset.params, dataset.subsets[0].params):  # what training uses: the dataset config's values
        values |= {k: v for k, v in vars(params).items() if isinstance(v, plain)}
    out[job["name"]] = values
json.dump(out, open(out_file, "w"))
"""


@pytest.mark.sd_scripts
def test_sd_scripts_own_parser_reads_the_same_values(sd_scripts_dir, tmp_path, monkeypatch):
    """The originals and gaze's configs through sd-scripts' argument parser and dataset blueprint."""
    import sys

    from wrapper.kohya.checkout import trainer_env
    from wrapper.launch import run_captured

    jobs, cases = [], {}
    for i, case in enumerate(CASES):
        root = tmp_path / str(i)
        root.mkdir()
        done = _workdir_case(case, root, monkeypatch)
        arguments, dataset, _ = original(case)
        original_config = root / "original.toml"
        original_config.write_text(toml.dumps(arguments) if dataset is None else files(case)[0].read_text())
        script = importer.SCRIPT[done["family"]]
        jobs += [{"name": f"{i}/original", "script": script, "config": str(original_config),
                  "dataset": str(files(case)[1]) if dataset is not None else None},
                 {"name": f"{i}/gaze", "script": script, "config": str(root / "cfg" / "config.toml"),
                  "dataset": str(root / "cfg" / "dataset.toml")}]
        cases[i] = (case, done)
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    (tmp_path / "reader.py").write_text(READER)
    ran = run_captured([sys.executable, str(tmp_path / "reader.py"), str(tmp_path / "jobs.json"),
                        str(tmp_path / "out.json")], cwd=sd_scripts_dir, env=trainer_env(sd_scripts_dir))
    assert ran.returncode == 0, ran.stderr[-3000:]
    read = json.loads((tmp_path / "out.json").read_text())
    for values in read.values():  # the dataset's own names, under the arguments' names effective() reads
        for dataset_name, argument in importer.DATASET_FALLBACK.items():
            values[argument] = values.pop(dataset_name)
    for i, (case, done) in cases.items():
        keys = MAPPED | set(dict(done["recipe"]["extra_args"]))
        before = as_read(read[f"{i}/original"], None, done["family"], keys)
        after = as_read(read[f"{i}/gaze"], None, done["family"], keys)
        for key in ("seed", "save_precision"):
            if before[key] is None:
                before.pop(key), after.pop(key)
        assert {k: (before[k], v) for k, v in after.items() if before[k] != v} == {}, case


def _workdir_case(case: tuple[str, ...], root: Path, monkeypatch) -> dict:
    from PIL import Image

    monkeypatch.chdir(root)
    (root / "images").mkdir()
    for name, size in (("portrait", (512, 768)), ("landscape", (768, 512))):
        Image.new("RGB", size, (120, 80, 40)).save(root / "images" / f"{name}.png")
        for extension in (".txt", ".caption"):
            (root / "images" / f"{name}{extension}").write_text(f"a {name} photo. Studio light.", encoding="utf-8")
    for family in ("sd15", "sdxl"):
        write_checkpoint(root / f"{family}.safetensors", family)
    return import_then_config(case, root)
