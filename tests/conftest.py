"""Shared fixtures: golden-file updating, real sd-scripts gating, small real datasets."""

from __future__ import annotations

import os
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
