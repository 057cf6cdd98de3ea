"""The CLI over recipes and configs, driven through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
import toml
from click.testing import CliRunner

from wrapper.cli import main


@pytest.fixture
def run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no gaze.toml from elsewhere
    for var in ("SD_SCRIPTS_DIR", "GAZE_DATASET", "GAZE_MODEL_SD15", "GAZE_MODEL_SDXL", "GAZE_RECIPES",
                "GAZE_SETTINGS"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), catch_exceptions=False)


def test_every_command_helps_itself(run):
    for name, command in main.commands.items():
        text = command.help or ""
        first = text.strip().splitlines()[0]
        assert first[0].isupper() and not first.split()[0].endswith("s"), f"{name}: {first!r} is not imperative"
        assert "Example: gaze" in text, f"{name} has no example"
        assert run(name, "--help").exit_code == 0


def test_recipes_lists_one_per_line(run):
    out = run("recipes").output
    assert out.splitlines()[0].startswith("sdxl-standard ")
    assert "high-lr=2e-4" in out and "glitch-no-bucket" in out


def test_show_prints_the_diff_from_the_baseline(run):
    out = run("show", "sd15-standard+no-bucket+high-lr=3e-4").output
    assert "deliberate glitches: no-bucket, high-lr=3e-4" in out
    assert "optimizer.unet_lr: 0.0001 -> 0.0003" in out and "data.buckets.enabled: True -> False" in out


def test_unknown_recipe_is_one_clear_line(run):
    result = run("show", "sd15-standrd")
    assert result.exit_code == 1
    assert result.output.strip() == ("error: unknown recipe 'sd15-standrd' (did you mean 'sd15-standard'?); "
                                     "`gaze recipes` lists them")


def test_config_writes_three_checked_files(run, image_dir, tmp_path, checkpoints):
    out = tmp_path / "cfg"
    result = run("config", "sdxl-standard+crop-flip", "--out", str(out), "--dataset", str(image_dir),
                 "--model", str(checkpoints["sdxl"]))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "dataset.toml", "sample_prompts.txt"]
    args = toml.load(out / "config.toml")
    assert args["model"]["pretrained_model_name_or_path"] == str(checkpoints["sdxl"])
    # the images a run would train on: the prepared (cropped) copies, in the cache
    image_dirs = [s["image_dir"] for s in toml.load(out / "dataset.toml")["datasets"][0]["subsets"]]
    assert len(image_dirs) == 1 and Path(image_dirs[0]).parent == tmp_path / ".cache" / "prepared"
    assert "committed sd-scripts v0.10.1 table" in result.output
    assert run("validate", str(out)).exit_code == 0


def test_config_is_what_a_run_would_launch(run, tmp_path, checkpoints):
    """A nested `10_dress/` dataset is accepted (every sub-folder a subset), and long captions raise
    max_token_length, exactly as `gaze run` renders them."""
    from PIL import Image

    nested = tmp_path / "data" / "10_dress"
    nested.mkdir(parents=True)
    Image.new("RGB", (64, 96), (1, 2, 3)).save(nested / "a.png")
    (nested / "a.txt").write_text(" ".join(["a red dress with golden buttons"] * 20), encoding="utf-8")
    result = run("config", "sd15-standard", "--out", "cfg", "--dataset", str(tmp_path / "data"),
                 "--model", str(checkpoints["sd15"]))
    assert result.exit_code == 0, result.output
    assert "max_token_length raised 75 -> 150" in result.output
    subsets = toml.load(tmp_path / "cfg" / "dataset.toml")["datasets"][0]["subsets"]
    assert [Path(s["image_dir"]).name for s in subsets][-1] == "10_dress"
    assert toml.load(tmp_path / "cfg" / "config.toml")["training"]["max_token_length"] == 150


def test_config_checks_the_model_family(run, image_dir, checkpoints):
    result = run("config", "sd15-standard", "--out", "cfg", "--dataset", str(image_dir),
                 "--model", str(checkpoints["sdxl"]))
    assert result.exit_code == 1 and "is an SDXL checkpoint but recipe 'sd15-standard' trains SD1.x" in result.output


def test_settings_file_supplies_dataset_and_model(run, image_dir, tmp_path, checkpoints):
    (tmp_path / "gaze.toml").write_text(f'dataset = "{image_dir}"\n[models]\nsd15 = "models/sd15.safetensors"\n')
    result = run("config", "sd15-standard", "--out", "cfg")
    assert result.exit_code == 0, result.output
    args = toml.load(tmp_path / "cfg" / "config.toml")
    assert args["model"]["pretrained_model_name_or_path"] == str(tmp_path / "models" / "sd15.safetensors")


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("nonempty", ["sd15-standard"], "is not an empty directory"),
        ("none", ["sd15-standard", "--dataset", "/no/such/dir"], "does not exist"),
        ("empty", ["sd15-standard"], "empty: no images"),
        ("none", ["sd15-standard+no-bukcet"], "did you mean 'no-bucket'"),
        ("nomodel", ["sd15-standard"], "no checkpoint named 'sd15'"),
        ("nomodel", ["sd15-standard+mismatched-base"], "no checkpoint named 'mismatched'"),
    ],
)
def test_config_bad_input_writes_nothing(run, image_dir, tmp_path, setup, args, message, checkpoints):
    out = tmp_path / "cfg"
    extra = ["--dataset", str(image_dir)] if "--dataset" not in args else []
    if setup == "nonempty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    if setup == "empty":
        empty = tmp_path / "empty"
        empty.mkdir()
        extra = ["--dataset", str(empty)]
    model = [] if setup == "nomodel" else ["--model", str(checkpoints["sd15"])]
    result = run("config", *args, "--out", str(out), *extra, *model)
    assert result.exit_code == 1 and message in result.output, result.output
    if setup == "nonempty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()


def test_validate_reports_every_problem(run, image_dir, tmp_path, checkpoints):
    out = tmp_path / "cfg"
    run("config", "sd15-standard", "--out", str(out), "--dataset", str(image_dir), "--model", str(checkpoints["sd15"]))
    text = (out / "config.toml").read_text().replace("network_dim = 128", "netwrok_dim = 128")
    (out / "config.toml").write_text(text.replace('mixed_precision = "bf16"', 'mixed_precision = "fp32"'))
    dataset = (out / "dataset.toml").read_text()
    (out / "dataset.toml").write_text(dataset.replace("keep_tokens = 0", "keep_tokens = 0.5"))
    result = run("validate", str(out))
    assert result.exit_code == 1
    assert "netwrok_dim" in result.output and "did you mean 'network_dim'" in result.output
    assert "mixed_precision = 'fp32'" in result.output and "keep_tokens = 0.5" in result.output


def test_validate_names_a_toml_syntax_error(run, tmp_path: Path):
    (tmp_path / "dataset.toml").write_text("[general\n")
    (tmp_path / "config.toml").write_text("a = 1\n")
    result = run("validate", str(tmp_path))
    assert result.exit_code == 1 and "dataset.toml: not valid TOML" in result.output


def test_missing_checkout_named_explicitly_is_an_error(run, image_dir, tmp_path):
    result = run("config", "sd15-standard", "--out", str(tmp_path / "c"), "--dataset", str(image_dir),
                 "--model", "/m", "--sd-scripts", str(tmp_path))
    assert result.exit_code == 1 and "is not an sd-scripts checkout" in result.output


def test_validate_checks_configs_written_by_other_people_with_their_trainers_rules(run, tmp_path, checkpoints):
    """No gaze header: the script is decided from the model (as `gaze run` does) or from --script, and
    fine-tuning subsets and conditioning subsets (with masked_loss) are accepted as train_network.py does."""
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "dataset.toml").write_text(
        "[general]\nresolution = 1024\n[[datasets]]\n[[datasets.subsets]]\nmetadata_file = '/data/meta.json'\n"
        "image_dir = '/data/img'\n[[datasets]]\n[[datasets.subsets]]\nimage_dir = '/data/a'\n"
        "conditioning_data_dir = '/data/masks'\n")
    (folder / "config.toml").write_text(
        f"pretrained_model_name_or_path = '{checkpoints['sdxl']}'\nnetwork_module = 'networks.lora'\n"
        "masked_loss = true\ncache_text_encoder_outputs = true\nnetwork_train_unet_only = true\n"
        "output_dir = '/out'\ndataset_config = '/cfg/dataset.toml'\n")
    result = run("validate", str(folder))
    assert result.exit_code == 0, result.output
    assert "valid for sdxl_train_network.py (from the model (SDXL))" in result.output
    as_sd15 = run("validate", str(folder), "--script", "sd15")
    assert as_sd15.exit_code == 1 and "checked as train_network.py (as asked (--script))" in as_sd15.output
    assert "cache_text_encoder_outputs" in as_sd15.output


def test_validate_explains_subsets_without_a_dataset(run, tmp_path):
    (tmp_path / "dataset.toml").write_text("[[datasets.subsets]]\nimage_dir = '/d'\n")
    (tmp_path / "config.toml").write_text("network_module = 'networks.lora'\n")
    result = run("validate", str(tmp_path))
    assert result.exit_code == 1 and "needs a [[datasets]] line before it" in result.output
    assert "Traceback" not in result.output


def test_config_counts_the_sample_prompts_tokens_and_names_what_sampling_would_lose(run, image_dir, tmp_path,
                                                                                       checkpoints):
    """sd-scripts samples with its long-prompt pipeline: 3 chunks of 75 tokens, whatever max_token_length is."""
    result = run("config", "sd15-standard", "--out", str(tmp_path / "a"), "--dataset", str(image_dir),
                 "--model", str(checkpoints["sd15"]))
    assert result.exit_code == 0, result.output
    assert "sample prompt 1: 220 CLIP tokens (sd-scripts' sampling reads up to 225: all of it)" in result.output
    assert "sample prompt 3: 129 CLIP tokens" in result.output and "warning" not in result.output
    (tmp_path / "mine.py").write_text(
        "from wrapper.recipe import SamplePrompt, evolve\nfrom recipes.standard import SD15_STANDARD\n"
        "LONG = 'red wool coat, ' * 80 + 'the very last words'\n"
        "RECIPES = (evolve(SD15_STANDARD, sampling={'prompts': (SamplePrompt(prompt=LONG),)}).replace(name='long', "
        "description='d'),)\n")
    (tmp_path / "gaze.toml").write_text('recipes = "mine.py"\n')
    result = run("config", "long", "--out", str(tmp_path / "b"), "--dataset", str(image_dir),
                 "--model", str(checkpoints["sd15"]))
    assert result.exit_code == 0, result.output
    assert "warning: sample prompt 1: 324 CLIP tokens; sd-scripts' sampling reads the first 225 and loses:" in (
        result.output) and result.output.rstrip().endswith("the very last words")


def test_import_is_a_command_with_help(run):
    result = run("import", "--help")
    assert result.exit_code == 0 and "Example: gaze import" in result.output and "--out" in result.output


def test_config_writes_the_recipes_own_attention(run, tmp_path, image_dir, checkpoints):
    (tmp_path / "mine.py").write_text(
        "from wrapper.recipe import evolve\nfrom recipes.standard import SD15_STANDARD\n"
        "RECIPES = (evolve(SD15_STANDARD, training={'attention': 'mem_eff'}).replace(name='sd15-memeff'),)\n")
    (tmp_path / "gaze.toml").write_text('recipes = "mine.py"\n')
    result = run("config", "sd15-memeff", "--out", "cfg", "--dataset", str(image_dir), "--model",
                 str(checkpoints["sd15"]), "--table")
    assert result.exit_code == 0, result.output
    training = toml.load(tmp_path / "cfg" / "config.toml")["training"]
    assert training.get("mem_eff_attn") is True and "sdpa" not in training
