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


def test_config_writes_three_checked_files(run, image_dir, tmp_path):
    out = tmp_path / "cfg"
    result = run("config", "sdxl-standard+crop-flip", "--out", str(out), "--dataset", str(image_dir),
                 "--model", "/models/sdxl.safetensors")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "dataset.toml", "sample_prompts.txt"]
    args = toml.load(out / "config.toml")
    assert args["model"]["pretrained_model_name_or_path"] == "/models/sdxl.safetensors"
    assert toml.load(out / "dataset.toml")["datasets"][0]["subsets"][0]["image_dir"] == str(image_dir)
    assert "committed sd-scripts v0.10.1 table" in result.output
    assert run("validate", str(out)).exit_code == 0


def test_settings_file_supplies_dataset_and_model(run, image_dir, tmp_path):
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
        ("empty", ["sd15-standard"], "has no images"),
        ("none", ["sd15-standard+no-bukcet"], "did you mean 'no-bucket'"),
        ("nomodel", ["sd15-standard"], "no checkpoint named 'sd15'"),
        ("nomodel", ["sd15-standard+mismatched-base"], "no checkpoint named 'mismatched'"),
    ],
)
def test_config_bad_input_writes_nothing(run, image_dir, tmp_path, setup, args, message):
    out = tmp_path / "cfg"
    extra = ["--dataset", str(image_dir)] if "--dataset" not in args else []
    if setup == "nonempty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    if setup == "empty":
        empty = tmp_path / "empty"
        empty.mkdir()
        extra = ["--dataset", str(empty)]
    model = [] if setup == "nomodel" else ["--model", "/m.safetensors"]
    result = run("config", *args, "--out", str(out), *extra, *model)
    assert result.exit_code == 1 and message in result.output, result.output
    if setup == "nonempty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()


def test_validate_reports_every_problem(run, image_dir, tmp_path):
    out = tmp_path / "cfg"
    run("config", "sd15-standard", "--out", str(out), "--dataset", str(image_dir), "--model", "/m")
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
