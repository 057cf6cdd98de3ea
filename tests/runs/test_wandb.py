"""Weights & Biases through sd-scripts' own options: the setting, --log-with, the rendered arguments, the key
kept out of every file, resuming with other trackers (no trainer runs here; see test_sd_scripts_trackers)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import toml
from click.testing import CliRunner

from recipes import builtin_registry
from wrapper.cli import main
from wrapper.errors import ConfigError, GazeError, TrainExtraMissing
from wrapper.kohya import configs, interface
from wrapper.kohya.checkout import require_trackers, trainer_env
from wrapper.kohya.render import Places
from wrapper.runs import layout as runs
from wrapper.runs.resume import retrack
from wrapper.settings import check_trackers, load_settings

registry = builtin_registry()
KEY = "0123456789abcdef0123456789abcdef01234567"


def places(trackers: tuple[str, ...] = ("tensorboard",), root: Path = Path("/data/runs/x/20260101T000000Z-abc123")):
    return Places(image_dir=Path("/data/fashion"), model=Path("/models/base.safetensors"), output_dir=root / "output",
                  logging_dir=root / "logs", sample_prompts=root / "sample_prompts.txt", output_name="lora",
                  trackers=trackers, run_name=root.name)


def logging_table(spec: str, trackers: tuple[str, ...]) -> dict:
    rendered = configs.render(registry.resolve(spec), places(trackers), Path("/cfg"))
    return toml.loads(rendered.texts()[configs.ARGUMENTS_FILE])["logging"]


def test_wandb_logs_with_all_named_after_the_run_folder_in_the_baselines_project():
    table = logging_table("sd15-standard+no-bucket", ("tensorboard", "wandb"))
    assert table == {"logging_dir": "/data/runs/x/20260101T000000Z-abc123/logs", "log_with": "all",
                     "wandb_run_name": "20260101T000000Z-abc123", "log_tracker_name": "sd15-standard",
                     "console_log_simple": True}
    assert logging_table("sdxl-standard", ("tensorboard", "wandb"))["log_tracker_name"] == "sdxl-standard"


def test_tensorboard_alone_renders_as_before():
    assert logging_table("sd15-standard", ("tensorboard",)) == {
        "logging_dir": "/data/runs/x/20260101T000000Z-abc123/logs", "log_with": "tensorboard",
        "console_log_simple": True}


def test_wandb_arguments_pass_the_committed_table():
    r = configs.render(registry.resolve("sd15-smoke"), places(("tensorboard", "wandb")), Path("/cfg"))
    assert configs.check(r.script, r.arguments, r.dataset, checkout=None, where=Path("/cfg")) == []
    assert "wandb_api_key" not in interface.flatten(r.arguments)


@pytest.mark.parametrize("key", ["wandb_api_key", "huggingface_token"])
def test_a_credential_in_extra_args_is_refused_without_repeating_it(key):
    recipe = registry.resolve("sd15-standard").replace(extra_args=((key, KEY),))
    with pytest.raises(ConfigError) as err:
        configs.render(recipe, places(("tensorboard", "wandb")), Path("/cfg"))
    text = str(err.value)
    assert f"extra_args sets {key!r}: a credential never goes into a recipe" in text
    assert ("WANDB_API_KEY" if key == "wandb_api_key" else "HF_TOKEN") in text
    assert KEY not in text


@pytest.mark.parametrize("key", ["wandb_run_name", "log_tracker_name", "log_with"])
def test_tracker_arguments_cannot_come_through_extra_args(key):
    recipe = registry.resolve("sd15-standard").replace(extra_args=((key, "mine"),))
    with pytest.raises(ConfigError, match=f"extra_args sets '{key}' = 'mine', which gaze already sets"):
        configs.render(recipe, places(), Path("/cfg"))


def test_trackers_setting_keeps_tensorboard_and_checks_names(tmp_path):
    assert check_trackers(["wandb"], "x") == ("tensorboard", "wandb")
    assert check_trackers("wandb, tensorboard", "x") == ("tensorboard", "wandb")
    assert check_trackers([], "x") == ("tensorboard",)
    with pytest.raises(GazeError, match="unknown tracker 'wandbb' \\(did you mean 'wandb'\\?\\)"):
        check_trackers(["wandbb"], "x")
    with pytest.raises(GazeError, match="expected a list of tracker names"):
        check_trackers(3, "x")
    settings = tmp_path / "gaze.toml"
    settings.write_text('trackers = ["tensorboard", "wandb"]\n')
    assert load_settings(settings, env={}).trackers == ("tensorboard", "wandb")
    assert load_settings(settings, env={"GAZE_TRACKERS": "tensorboard"}).trackers == ("tensorboard",)
    (tmp_path / "empty.toml").write_text("")
    assert load_settings(tmp_path / "empty.toml", env={}).trackers == ("tensorboard",)
    settings.write_text('trackers = ["mlflow"]\n')
    with pytest.raises(GazeError, match="trackers: unknown tracker 'mlflow'"):
        load_settings(settings, env={})


def test_log_with_option_is_checked_on_every_training_command():
    for args in (["run", "sd15-smoke"], ["queue", "sd15-smoke"], ["sweep", "sd15-smoke", "no-bucket"],
                 ["resume", "."]):
        result = CliRunner().invoke(main, [*args, "--log-with", "tensorboard,neptune"])
        assert result.exit_code == 2 and "unknown tracker 'neptune'" in result.output, result.output
        assert "--log-with" in CliRunner().invoke(main, [args[0], "--help"]).output


def test_a_missing_wandb_is_one_line_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    require_trackers(("tensorboard",))
    with pytest.raises(TrainExtraMissing) as err:
        require_trackers(("tensorboard", "wandb"))
    assert str(err.value) == ("--log-with wandb: wandb is not installed; install the wandb extra with "
                              "`make setup-trackers` (pip install -e '.[wandb]')")


def test_the_child_gets_wandb_dir_and_the_key_only_from_the_environment(tmp_path):
    env = trainer_env(tmp_path, {"WANDB_API_KEY": KEY, "PATH": "/bin"}, wandb_dir=tmp_path / "logs")
    assert env["WANDB_DIR"] == str(tmp_path / "logs") and env["WANDB_API_KEY"] == KEY  # wandb reads it itself
    assert "WANDB_DIR" not in trainer_env(tmp_path, {"PATH": "/bin"})
    assert "WANDB_API_KEY" not in trainer_env(tmp_path, {"PATH": "/bin"}, wandb_dir=tmp_path)


def test_retrack_switches_a_runs_next_launch_and_back(tmp_path):
    run_dir = tmp_path / "runs" / "sd15-smoke" / "20260101T000000Z-abc123"
    run_dir.mkdir(parents=True)
    recipe = registry.resolve("sd15-smoke")
    rendered = configs.render(recipe, places(root=run_dir), run_dir)
    (run_dir / configs.ARGUMENTS_FILE).write_text(rendered.texts()[configs.ARGUMENTS_FILE])
    runs.write_run_info(run_dir, runs.RunInfo(model="/m", output_name="lora", family="sd15", sd_scripts="/s",
                                              script="train_network.py", max_train_steps=4))
    runs.write_recipe_record(run_dir, runs.RecipeRecord(name="sd15-smoke", baseline="sd15-smoke"))
    assert retrack(run_dir, ("tensorboard", "wandb"))
    text = (run_dir / configs.ARGUMENTS_FILE).read_text()
    assert text.startswith("# written by gaze from recipe sd15-smoke\n# script: train_network.py\n")
    wanted = toml.loads(configs.render(recipe, places(("tensorboard", "wandb"), run_dir), run_dir)
                        .texts()[configs.ARGUMENTS_FILE])
    assert toml.loads(text) == wanted
    assert json.loads((run_dir / runs.RUN).read_text())["trackers"] == ["tensorboard", "wandb"]
    assert not retrack(run_dir, ("tensorboard", "wandb"))
    assert retrack(run_dir, ("tensorboard",))
    assert (run_dir / configs.ARGUMENTS_FILE).read_text() == rendered.texts()[configs.ARGUMENTS_FILE]


def test_run_json_without_trackers_reads_as_tensorboard(tmp_path):
    (tmp_path / runs.RUN).write_text(json.dumps({"model": "/m", "output_name": "lora", "family": "sd15",
                                                 "sd_scripts": "/s", "script": "train_network.py"}))
    assert runs.read_run_info(tmp_path).trackers == ["tensorboard"]
