"""The HTML report as a person sees it: rendered by headless Chromium, checked by pixel counts.

Skipped when no Chromium is installed (Debian: apt-get install chromium).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import runfactory as rf

from wrapper.reports import compare
from wrapper.reports import run as report

BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="needs chromium (apt-get install chromium)")


def screenshot(page, out, tmp_path, size=(1280, 3400)):
    profile = tmp_path / "profile"
    profile.mkdir()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={out}",
        f"--window-size={size[0]},{size[1]}",
    ]
    subprocess.run([BROWSER, *flags, page.as_uri()], check=True, capture_output=True, timeout=120)
    from PIL import Image

    with Image.open(out) as img:
        return np.asarray(img.convert("RGB")).astype(int)


def near(pixels, rgb, tolerance=40) -> int:
    return int((np.abs(pixels - np.array(rgb)).sum(axis=2) < tolerance).sum())


def test_report_renders_with_plots_tables_and_samples(tmp_path):
    run = rf.make_run(
        tmp_path,
        "sd15-standard+high-lr=3e-4",
        loss=rf.spiking(800, at=(400,)),
        modifiers=["high-lr=3e-4"],
        glitches=["high-lr=3e-4"],
        sample_steps=[200, 400, 600, 800],
        validation=lambda s: 0.15 - s / 2e4,
        validate_every=100,
    )
    report.write_report(run)
    pixels = screenshot(run / "report.html", tmp_path / "report.png", tmp_path)
    assert (pixels.sum(axis=2) < 600).mean() > 0.02  # not a blank page
    assert near(pixels, (31, 119, 180)) > 1500  # the loss curves (matplotlib C0)
    assert near(pixels, (214, 39, 40)) > 200  # the validation curve (C3)
    assert near(pixels, (19, 115, 51)) > 100  # "ok" verdicts in green
    assert near(pixels, (163, 92, 0)) > 50  # the spike warning in amber
    assert near(pixels, (250, 220, 0), 60) > 2000  # the sample images' yellow discs
    rows_with_ink = (pixels.sum(axis=2) < 500).any(axis=1)
    assert rows_with_ink[2500:].any()  # the page runs down to the sample grid


def test_comparison_renders(tmp_path):
    runs = [rf.make_run(tmp_path, f"r{i}", loss=rf.converging(500, seed=i), sample_steps=[250, 500]) for i in range(3)]
    compare.write_comparison(runs, tmp_path / "cmp")
    pixels = screenshot(tmp_path / "cmp" / "comparison.html", tmp_path / "cmp.png", tmp_path)
    for color in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):  # one line per run
        assert near(pixels, color) > 500
