"""notebooks/compare_runs.ipynb runs top to bottom on runs made here, through the library's API."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import runfactory as rf

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "compare_runs.ipynb"


def test_compare_runs_notebook(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    runs = [
        rf.make_run(tmp_path, "sd15-standard", loss=rf.converging(300), sample_steps=[150, 300]),
        rf.make_run(
            tmp_path,
            "sd15-standard+high-lr=3e-4",
            loss=rf.spiking(300, at=(100,)),
            glitches=["high-lr=3e-4"],
            modifiers=["high-lr=3e-4"],
            sample_steps=[150, 300],
        ),
    ]
    out = tmp_path / "comparison"
    monkeypatch.setenv("GAZE_COMPARE_RUNS", os.pathsep.join(map(str, runs)))
    monkeypatch.setenv("GAZE_COMPARE_OUT", str(out))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    assert (out / "comparison.html").is_file() and (out / "plots" / "loss.png").is_file()
    text = "".join(str(o.get("data", o.get("text", ""))) for c in notebook.cells for o in c.get("outputs", []))
    assert "high-lr=3e-4" in text and "Convergence" in text and "loss/current" in text
    assert "image/png" in text  # the overlaid curves
    assert not any(o.get("output_type") == "error" for c in notebook.cells for o in c.get("outputs", []))
