"""Shared fixtures: no user settings, golden-file updating, real sd-scripts gating, a one-node Slurm
cluster, small real datasets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="Rewrite tests/golden from the current code.")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SD_SCRIPTS_DIR"):
        return
    skip = pytest.mark.skip(reason="needs SD_SCRIPTS_DIR (a sd-scripts v0.10.1 checkout) and the train extra")
    for item in items:
        if "sd_scripts" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def no_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without the user's GAZE_* variables (settings file, dataset, models, recipes)."""
    for name in [n for n in os.environ if n.startswith("GAZE_") and n != "GAZE_TEST_CACHE"]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[str]:
    """A one-node Slurm cluster on this machine (scripts/slurm-cluster), started once for the session and
    stopped at its end if this fixture started it; SLURM_CONF points at it. Skips where it cannot start."""
    import subprocess

    pytest.importorskip("submitit", reason="needs the slurm extra: pip install -e '.[slurm]'")
    script = Path(__file__).resolve().parents[1] / "scripts" / "slurm-cluster"
    running = subprocess.run([script, "status"], capture_output=True, timeout=60).returncode == 0
    try:
        done = subprocess.run([script, "start"], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"no Slurm cluster: scripts/slurm-cluster start did not run ({exc})")
    conf = next((line.split("=", 1)[1] for line in done.stdout.splitlines() if line.startswith("export SLURM_CONF=")),
                None)
    if done.returncode != 0 or conf is None:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
        pytest.skip(f"no Slurm cluster: scripts/slurm-cluster start failed ({tail})")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", conf)
        yield conf
    if not running:
        subprocess.run([script, "stop"], capture_output=True, timeout=120)


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return request.config.getoption("--update-golden")


@pytest.fixture
def sd_scripts_dir() -> Path:
    return Path(os.environ["SD_SCRIPTS_DIR"]).resolve()


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """Two small captioned images, portrait and landscape."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for name, size in (("portrait", (64, 96)), ("landscape", (96, 64))):
        Image.new("RGB", size, (120, 80, 40)).save(folder / f"{name}.png")
        (folder / f"{name}.txt").write_text(f"a {name} photo of a coat", encoding="utf-8")
    return folder


#: One key of each family's single-file layout, as wrapper.kohya.models tells them apart.
FAMILY_KEYS = {
    "sd15": "cond_stage_model.transformer.text_model.embeddings.position_ids",
    "sd2": "cond_stage_model.model.token_embedding.weight",
    "sdxl": "conditioner.embedders.1.model.token_embedding.weight",
}


def write_checkpoint(path: Path, family: str) -> Path:
    """A header-only safetensors file whose keys say `family` (no weights: nothing loads it)."""
    import json
    import struct

    header = json.dumps({FAMILY_KEYS[family]: {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


@pytest.fixture
def checkpoints(tmp_path: Path) -> dict[str, Path]:
    """A checkpoint file of each family, keyed by family."""
    return {family: write_checkpoint(tmp_path / "models" / f"{family}.safetensors", family) for family in FAMILY_KEYS}


@pytest.fixture
def stand_in_trainer():
    """Tests whose trainer or gen_img.py is a stand-in script need no train extra installed."""
    from unittest import mock

    with mock.patch("wrapper.kohya.checkout.missing_train_extra", lambda: None):
        yield
