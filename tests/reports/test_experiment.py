"""The experiment report of a sweep: planted effects are found, nulls are not, single seeds say so."""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from runfactory import make_run

from recipes import builtin_registry
from wrapper.cli import main
from wrapper.curves import stats
from wrapper.reports.experiment import write_experiment_report
from wrapper.runs.sweeps import create_sweep, seeds_from, with_seeds

registry = builtin_registry()


def _curve(level: float, rng: np.random.Generator, n: int = 300) -> np.ndarray:
    """A converging loss ending near `level`, with step noise."""
    steps = np.arange(n)
    return level + 0.2 * np.exp(-steps / 40) + rng.normal(0, 0.004, n)


def make_sweep(tmp_path: Path, plan: dict[str, tuple[float, int]], *, validation: bool = False,
               failed: frozenset[tuple[str, int]] = frozenset()) -> Path:
    """A sweep of sd15-smoke variants: spec -> (final loss level, seeds), each member's folder filled
    with a synthetic run whose loss ends near that level, shifted by seed noise (sd 0.004) drawn per run."""
    members = [(spec, r) for spec, (_, count) in plan.items()
               for r in with_seeds(registry.resolve(spec), seeds_from(str(count), 1))]
    sweep_dir, record = create_sweep(tmp_path / "runs", members, kind="sweep", backend="local", parallel=1,
                                     baseline="sd15-smoke", variants=[s.split("+", 1)[1] for s in plan if "+" in s])
    for member in record.members:
        rng = np.random.default_rng([zlib.crc32(member.spec.encode()), member.seed])
        level = plan[member.spec][0] + rng.normal(0, 0.004)
        made = make_run(tmp_path / "made" / Path(member.run_dir).name, member.spec, loss=_curve(level, rng),
                        state="failed" if (member.spec, member.seed) in failed else "succeeded",
                        validation=(lambda s, lv=level: lv + 0.05 + s / 3000) if validation else None,
                        validate_every=30 if validation else 0,
                        values={"training": {"seed": member.seed, "max_train_steps": 300}})
        for path in made.iterdir():
            os.replace(path, Path(member.run_dir) / path.name)
    return sweep_dir


def _metric_row(md: str, heading: str, variant: str) -> str:
    section = md.split(f"### {heading}", 1)[1].split("###", 1)[0]
    return next(line for line in section.splitlines() if line.startswith(f"| {variant} |"))


def test_a_planted_effect_is_beyond_seed_noise_and_a_null_is_not(tmp_path):
    sweep_dir = make_sweep(tmp_path, {"sd15-smoke": (0.10, 3), "sd15-smoke+high-lr": (0.16, 3),
                                      "sd15-smoke+crop-flip": (0.10, 3), "sd15-smoke+no-bucket": (0.16, 1)})
    written = write_experiment_report(sweep_dir)
    md = (sweep_dir / "report.md").read_text()
    final = stats.CURVE_METRICS["final_loss"]
    assert stats.BEYOND in _metric_row(md, final, "sd15-smoke+high-lr")
    assert stats.WITHIN in _metric_row(md, final, "sd15-smoke+crop-flip")
    assert stats.ONE_SEED in _metric_row(md, final, "sd15-smoke+no-bucket")
    assert "(baseline)" in _metric_row(md, final, "sd15-smoke")
    difference = re.search(r"\| (0\.0[0-9]+) \[(0\.0[0-9]+), (0\.0[0-9]+)\]",
                           _metric_row(md, final, "sd15-smoke+high-lr"))
    low, estimate, high = float(difference[2]), float(difference[1]), float(difference[3])
    assert low <= estimate <= high and low > 0 and abs(estimate - 0.06) < 0.01  # the planted 0.06
    assert any(line.startswith("sd15-smoke+high-lr: final smoothed") for line in written.beyond)
    assert not any(line.startswith("sd15-smoke+crop-flip: final") for line in written.beyond)
    assert "Welch's t" in md and "seeds: 1, 2, 3" in md
    assert {p.name for p in written.paths} >= {"report.html", "report.md", "loss.png"}
    html = (sweep_dir / "report.html").read_text()
    links = re.findall(r'href="([^"]+report\.html)"', html)
    assert len(links) == 10 and all((sweep_dir / link).is_file() for link in links)
    assert "Validation loss over seeds: none logged." in md


def test_bootstrap_method_is_stated_and_validation_is_summarised(tmp_path):
    sweep_dir = make_sweep(tmp_path, {"sd15-smoke": (0.10, 2), "sd15-smoke+high-lr": (0.2, 2)}, validation=True)
    write_experiment_report(sweep_dir, method="bootstrap")
    md = (sweep_dir / "report.md").read_text()
    assert f"{stats.RESAMPLES} resamples" in md and "too narrow" in md
    assert "### final validation loss" in md and (sweep_dir / "plots" / "validation.png").is_file()


def test_runs_that_did_not_succeed_are_left_out_and_named(tmp_path):
    sweep_dir = make_sweep(tmp_path, {"sd15-smoke": (0.10, 2), "sd15-smoke+high-lr": (0.2, 2)},
                           failed=frozenset({("sd15-smoke+high-lr", 2)}))
    written = write_experiment_report(sweep_dir)
    assert written.left_out == ["sd15-smoke+high-lr seed 2: failed"]
    row = _metric_row((sweep_dir / "report.md").read_text(), stats.CURVE_METRICS["final_loss"], "sd15-smoke+high-lr")
    assert stats.ONE_SEED in row and "| 1 |" in row


def test_gaze_report_on_a_sweep_folder_writes_the_experiment_report(tmp_path, monkeypatch):
    sweep_dir = make_sweep(tmp_path, {"sd15-smoke": (0.10, 3), "sd15-smoke+high-lr": (0.16, 3)})
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["report", str(sweep_dir)])
    assert result.exit_code == 0, result.output
    assert f"wrote {sweep_dir / 'report.html'}" in result.output
    assert "beyond seed noise:\n    sd15-smoke+high-lr: final smoothed training loss" in result.output
