"""Measuring a generation grid and a run's samples: files written, cells grouped, index.json filled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import runfactory as rf
from click.testing import CliRunner
from PIL import Image

from wrapper.cli.metrics import metrics as metrics_command
from wrapper.generation import measure


def _image(path: Path, seed: int, size: int = 64) -> Path:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([np.sin(6 * x + rng.uniform(0, 6)), np.cos(5 * y + rng.uniform(0, 6)), x * y], -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(((rgb * 0.5 + 0.5) * 255).astype(np.uint8)).save(path)
    return path


def grid(root: Path) -> Path:
    """A generation folder: cell A has two identical seeds (collapsed), cell B two different ones."""
    images = []
    for cell, cfg, seeds in (("A", 7, (1, 1)), ("B", 3, (2, 3))):
        for k, seed in enumerate(seeds):
            name = f"images/{cell}-{k}.png"
            _image(root / name, seed)
            images.append({"file": name, "source": "final", "checkpoint": "final", "step": None,
                           "prompt_id": "P00", "prompt": "a coat", "sampler": "euler", "steps": 20, "cfg": cfg,
                           "negative": "on", "weight": 1.0, "seed": k + 1})
    (root / "index.json").write_text(json.dumps({"images": images, "sources": [{"run": ""}]}))
    return root


def test_a_grid_is_measured_per_image_cell_and_checkpoint(tmp_path):
    folder = grid(tmp_path / "gen")
    training = tmp_path / "train"
    _image(training / "a.png", 1)  # cell A's image is a copy of this training image
    _image(training / "b.png", 99)
    (folder_items := measure.generation_items(folder))
    measured, written = measure.measure_folder(folder, "generation grid", folder_items, against=training, workers=1)
    assert [p.name for p in written] == ["metrics.json", "metrics.csv"]
    document = json.loads((folder / "metrics.json").read_text())
    cells = {c["cfg"]: c for c in document["per_cell"]}
    assert cells[7]["seed_similarity"]["mean"] == pytest.approx(1.0)
    assert cells[3]["seed_similarity"]["mean"] < 0.9
    assert cells[7]["train_similarity"]["mean"] == pytest.approx(1.0)
    assert document["per_checkpoint"][0]["source"] == "final" and document["overall"]["contrast"]["n"] == 4
    assert set(document["metrics"]["blockiness"]) == {"measures", "larger_means", "reveals"}
    index = json.loads((folder / "index.json").read_text())
    assert all(set(entry["metrics"]) >= {"colourfulness", "seed_similarity"} for entry in index["images"])
    assert "clip_score" not in document["skipped"]  # no learned step was asked for
    assert (folder / "metrics.csv").read_text().count("\n") == 5


def test_without_training_images_memorisation_is_skipped_with_its_reason(tmp_path):
    folder = grid(tmp_path / "gen")
    measured = measure.measure(measure.generation_items(folder), workers=1)
    assert "train_similarity" in measured.skipped and "train_similarity" not in measured.frame.columns


def test_an_unreadable_image_is_a_problem_not_a_crash(tmp_path):
    folder = grid(tmp_path / "gen")
    (folder / "images" / "A-0.png").write_bytes(b"not a png")
    measured = measure.measure(measure.generation_items(folder), workers=1)
    assert len(measured.frame) == 3 and "A-0.png: cannot read it" in measured.problems[0]


def test_the_trainers_samples_of_a_run(tmp_path):
    run = rf.make_run(tmp_path, loss=rf.converging(20), sample_steps=[10, 20])
    items = measure.sample_items(run)
    assert {i.labels["source"] for i in items} == {"step 10", "step 20"} and len(items) == 4
    assert items[0].prompt.startswith("a photo of sks shape")


def test_the_cli_measures_a_run_and_its_grids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = rf.make_run(tmp_path, loss=rf.converging(20), sample_steps=[10, 20])
    grid(run / "generations" / "20260101T000000Z-abcdef")
    result = CliRunner().invoke(metrics_command, [str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "4 training samples image(s) measured" in result.output
    assert "4 generation grid image(s) measured" in result.output
    assert "skipped clip_score: no CLIP weights" in result.output
    assert (run / "metrics.json").is_file()
    assert (run / "generations" / "20260101T000000Z-abcdef" / "metrics.csv").is_file()


def test_the_run_report_and_the_comparison_show_the_metrics(tmp_path, monkeypatch):
    from wrapper.reports.compare import write_comparison
    from wrapper.reports.run import write_report

    monkeypatch.chdir(tmp_path)
    a = rf.make_run(tmp_path, "sd15-standard", loss=rf.converging(60), sample_steps=[30, 60])
    b = rf.make_run(tmp_path, "sd15-standard+high-lr", loss=rf.converging(60), sample_steps=[30, 60])
    for run in (a, b):
        measure.measure_folder(run, "training samples", measure.sample_items(run), against=None, workers=1)
    written = write_report(a)
    page = (a / "report.html").read_text()
    assert "Image metrics" in page and "colourfulness" in page and "step 30" in page and "more vivid colour" in page
    assert "Not measured: " in page and written.warnings == []
    write_comparison([a, b], tmp_path / "cmp")
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "## Image metrics" in md and "| sd15-standard (samples) |" in md
    assert "| sd15-standard+high-lr (samples) |" in md
