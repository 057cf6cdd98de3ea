"""Settings: said once in gaze.toml or the environment; every wrong value is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from wrapper.errors import GazeError
from wrapper.settings import dataset_for, load_settings, model_for


def test_file_then_environment(tmp_path):
    (tmp_path / "gaze.toml").write_text('dataset = "data"\n[models]\nsd15 = "m/a.safetensors"\n')
    settings = load_settings(tmp_path / "gaze.toml", env={"GAZE_MODEL_SDXL": "/x.safetensors"})
    assert settings.dataset == tmp_path / "data" and settings.models["sd15"] == tmp_path / "m" / "a.safetensors"
    assert settings.models["sdxl"] == Path("/x.safetensors") and settings.origin == str(tmp_path / "gaze.toml")
    assert load_settings(tmp_path / "gaze.toml", env={"GAZE_DATASET": "/d"}).dataset == Path("/d")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dataset = 3\n", "dataset = 3; expected a path as a non-empty string"),
        ("runs_dir = true\n", "runs_dir = True; expected a path"),
        ('cache_dir = ""\n', "cache_dir = ''; expected a path as a non-empty string"),
        ('models = "x"\n', "models = 'x'; expected a [models] table"),
        ('[models]\nsd15 = ""\n', "[models] sd15 = ''; expected the checkpoint's path as a non-empty string"),
        ("[models]\nsd15 = 5\n", "[models] sd15 = 5; expected"),
        ('datset = "x"\n', "unknown setting 'datset' (did you mean 'dataset'?)"),
        ("dataset = \n", "not valid TOML"),
    ],
)
def test_wrong_values_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "gaze.toml"
    path.write_text(text)
    with pytest.raises(GazeError) as err:
        load_settings(path, env={})
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_a_settings_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "gaze.toml"
    path.write_bytes(b'dataset = "caf\xe9"\n')
    with pytest.raises(GazeError, match=r"gaze.toml: not UTF-8 text \(byte 14\); save it as UTF-8"):
        load_settings(path, env={})


def test_gaze_settings_must_name_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GazeError, match=r"settings file .*nowhere.toml \(GAZE_SETTINGS\) does not exist"):
        load_settings(env={"GAZE_SETTINGS": str(tmp_path / "nowhere.toml")})
    with pytest.raises(GazeError, match=r"\(GAZE_SETTINGS\) is a folder"):
        load_settings(env={"GAZE_SETTINGS": str(tmp_path)})
    assert load_settings(env={}).origin == "defaults"  # no gaze.toml here: that is fine


def test_messages_name_the_settings_file_in_use(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text("[models]\n")
    settings = load_settings(path, env={})
    with pytest.raises(GazeError, match=r"add `sd15 = \"PATH\"` under \[models\] in .*lab.toml"):
        model_for(settings, "sd15", None, wanted_by="recipe 'sd15-standard'")
    with pytest.raises(GazeError, match=r"no dataset given: .* in .*lab.toml"):
        dataset_for(settings, None)


def test_where_runs_execute_and_the_slurm_table(tmp_path):
    path = tmp_path / "gaze.toml"
    path.write_text('on = "slurm"\n[slurm]\npartition = "gpu"\ntime_min = 90\ngpus_per_run = 0\n'
                    'setup = ["module load cuda"]\n')
    settings = load_settings(path, env={})
    assert settings.on == "slurm" and settings.slurm.partition == "gpu" and settings.slurm.time_min == 90
    assert settings.slurm.gpus_per_run == 0 and settings.slurm.setup == ("module load cuda",)
    assert settings.slurm.mem_gb == 64 and settings.slurm.max_parallel is None  # the defaults
    assert load_settings(path, env={"GAZE_ON": "local"}).on == "local"
    (tmp_path / "plain.toml").write_text('dataset = "d"\n')
    assert load_settings(tmp_path / "plain.toml", env={}).on == "local"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('on = "slrum"\n', "on = 'slrum'; expected one of 'local', 'slurm' (did you mean 'slurm'?)"),
        ("[slurm]\npartiton = 'gpu'\n", "[slurm]: unknown key 'partiton' (did you mean 'partition'?)"),
        ("[slurm]\ntime_min = 0\n", "[slurm] time_min = 0; expected a whole number >= 1"),
        ("[slurm]\nmem_gb = '64G'\n", "[slurm] mem_gb = '64G'; expected a whole number >= 1"),
        ("[slurm]\ngpus_per_run = true\n", "[slurm] gpus_per_run = True; expected a whole number >= 0"),
        ("[slurm]\npartition = ''\n", "[slurm] partition = ''; expected a non-empty string"),
        ("[slurm]\nsetup = 'module load cuda'\n", "[slurm] setup = 'module load cuda'; expected a list"),
        ('slurm = "gpu"\n', "[slurm] = 'gpu'; expected a table of Slurm resources"),
    ],
)
def test_wrong_execution_settings_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "gaze.toml"
    path.write_text(text)
    with pytest.raises(GazeError) as err:
        load_settings(path, env={})
    assert str(err.value).startswith(str(path)) and message in str(err.value)
