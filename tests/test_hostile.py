"""Hostile inputs through the command line: every one ends in one clear line, never a traceback,
and nothing that already exists is changed. (Datasets: tests/test_hostile_dataset.py; signals:
tests/test_launch.py and the real-trainer tests.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_checks import gaze_runner, one_error_line


@pytest.fixture
def gaze(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SD_SCRIPTS_DIR", raising=False)
    return gaze_runner()


def test_a_dataset_path_that_is_not_utf8(gaze, tmp_path, image_dir, checkpoints):
    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
    image_dir.rename(odd)
    line = one_error_line(gaze("config", "sd15-standard", "--out", "cfg", "--dataset", str(odd),
                                "--model", str(checkpoints["sd15"]), "--table"))
    assert "is not valid UTF-8" in line and not (tmp_path / "cfg").exists()


def test_an_output_path_longer_than_the_file_system_allows(gaze, image_dir, checkpoints):
    line = one_error_line(gaze("config", "sd15-standard", "--out", "x" * 300, "--dataset", str(image_dir),
                                "--model", str(checkpoints["sd15"]), "--table"))
    assert "File name too long" in line


def test_an_output_folder_that_is_a_file_is_left_alone(gaze, tmp_path, image_dir, checkpoints):
    (tmp_path / "cfg").write_text("mine")
    line = one_error_line(gaze("config", "sd15-standard", "--out", "cfg", "--dataset", str(image_dir),
                                "--model", str(checkpoints["sd15"]), "--table"))
    assert "is not an empty directory" in line and (tmp_path / "cfg").read_text() == "mine"


@pytest.mark.parametrize(
    "spec",
    ["sd15-standard+high-lr=", "sd15-standard+steps=1e999", "sd15-standard+steps=99999999999999999999999",
     "sd15-standard++", "+", "sd15-standard+dim=-1", "sd15-standard+caption-dropout=2", "\x00", "sd15-standard+😀"],
)
def test_hostile_recipe_specs(gaze, spec):
    one_error_line(gaze("show", spec))


def test_a_models_file_of_random_bytes_in_config(gaze, tmp_path, image_dir):
    model = tmp_path / "model.safetensors"
    model.write_bytes(os.urandom(4096))
    line = one_error_line(gaze("config", "sd15-standard", "--out", "cfg", "--dataset", str(image_dir),
                                "--model", str(model), "--table"))
    assert "model.safetensors" in line and "safetensors" in line


def test_a_broken_user_recipe_file_named_in_settings(gaze, tmp_path):
    (tmp_path / "mine.py").write_text("RECIPES = [1, 2]\n")
    (tmp_path / "gaze.toml").write_text('recipes = "mine.py"\n')
    assert "RECIPES[0] is a int; expected a Recipe" in one_error_line(gaze("recipes"))


def test_gaze_settings_naming_a_folder(gaze, tmp_path, monkeypatch):
    monkeypatch.setenv("GAZE_SETTINGS", str(tmp_path))
    assert "(GAZE_SETTINGS) is a folder" in one_error_line(gaze("recipes"))


def test_resume_of_a_folder_that_is_not_a_run(gaze, tmp_path):
    (tmp_path / "run.json").write_text("[1, 2]")
    (tmp_path / "status.json").write_text('{"state": "failed"}')
    line = one_error_line(gaze("resume", str(tmp_path)))
    assert "run.json: expected a JSON object, found list" in line
