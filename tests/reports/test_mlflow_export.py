"""gaze export mlflow: runs built with real event files, exported into a real SQLite store and read back with
MLflow's own client; exporting again changes nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import runfactory as rf
from click.testing import CliRunner

from wrapper.cli import main
from wrapper.errors import GazeError
from wrapper.reports.mlflow_export import ARTIFACTS, default_store, export_runs, metric_key, require_mlflow
from wrapper.reports.run import write_report
from wrapper.runs import layout as runs
from wrapper.runs.sweeps import Member, SweepRecord, write_sweep

N = 120
NAME = "sd15-standard+high-lr=3e-4"


@pytest.fixture
def client_for():
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    return lambda root: MlflowClient(tracking_uri=default_store(root))


def glitch_run(root: Path, **changes) -> Path:
    options = dict(loss=rf.converging(N), modifiers=["high-lr=3e-4"], glitches=["high-lr=3e-4"],
                   sample_steps=(60, 120), steps_per_epoch=40) | changes
    return rf.make_run(root, NAME, **options)


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for info in client.list_artifacts(run_id, path):
        found |= artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return found


def only_run(client, experiment: str):
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(found) == 1, found
    return found[0]


def test_a_run_reads_back_with_its_params_every_point_verdicts_and_report(tmp_path, client_for):
    root = tmp_path / "runs"
    run_dir = glitch_run(root)
    write_report(run_dir)
    (run_dir / "output" / f"{NAME}.safetensors").write_bytes(b"lora")
    (result,) = export_runs([run_dir], runs_dir=root, log=lambda _m: None)
    assert result.action == "created" and "no report yet" not in result.message
    client = client_for(root)
    run = only_run(client, "sd15-standard")  # the baseline names the experiment, as it names the W&B project
    assert run.info.status == "FINISHED" and run.info.run_name == f"{NAME}/{run_dir.name}"
    params = run.data.params
    assert (params["network.dim"], params["glitches"], params["seed"], params["family"]) == (
        "32", "high-lr=3e-4", "42", "sd15")
    assert params["recipe"] == NAME and params["baseline"] == "sd15-standard"

    scalars = runs.read_run_scalars(run_dir)
    for tag in scalars["tag"].unique():
        logged = scalars[scalars["tag"] == tag]
        expected = sorted(zip(logged["step"].astype(int), logged["value"].astype(float), strict=True))
        got = history(client, run.info.run_id, metric_key(tag))
        assert [s for s, _ in got] == [s for s, _ in expected], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6), tag
    assert [s for s, _ in history(client, run.info.run_id, "loss/current")] == list(range(1, N + 1))
    assert "gaze/final_loss" in run.data.metrics

    tags = run.data.tags
    assert tags["gaze.run"] == f"{NAME}/{run_dir.name}" and tags["gaze.glitches"] == "high-lr=3e-4"
    assert tags["verdict.Convergence"] and tags["verdict.NaN / inf"] and tags["verdict.Initial loss"]
    stored = artifacts(client, run.info.run_id)
    assert {"report/report.html", "report/report.md", "report/plots/samples.jpg", "verdicts.csv",
            "run/recipe.json", "run/status.json"} <= stored
    assert not any(p.startswith("lora/") for p in stored)  # only with --with-lora
    assert run.info.artifact_uri.startswith((root / ARTIFACTS).resolve().as_uri())

    again = export_runs([run_dir], runs_dir=root, log=lambda _m: None)
    assert again[0].action == "unchanged" and again[0].points == 0
    rerun = only_run(client, "sd15-standard")
    assert rerun.info.run_id == run.info.run_id and rerun.data.params == params
    for tag in scalars["tag"].unique():
        assert len(client.get_metric_history(run.info.run_id, metric_key(tag))) == (scalars["tag"] == tag).sum()


def test_a_resumed_run_is_updated_in_place_with_only_its_new_points(tmp_path, client_for):
    root = tmp_path / "runs"
    run_dir = glitch_run(root, loss=rf.converging(60), state="interrupted", sample_steps=())
    (first,) = export_runs([run_dir], runs_dir=root, log=lambda _m: None)
    client = client_for(root)
    assert client.get_run(first.run_id).info.status == "KILLED"
    rf.write_events(run_dir / "logs" / "20240101130000" / "network_train",
                    rf.sd_points(rf.converging(40), start=61), wall0=rf.WALL0 + 10_000)
    runs.write_status(run_dir, runs.Status("succeeded", "2024-01-01T12:00:00+00:00", "2024-01-01T13:30:00+00:00", 0))
    (second,) = export_runs([run_dir], runs_dir=root, log=lambda _m: None)
    assert second.action == "updated" and second.run_id == first.run_id
    assert [s for s, _ in history(client, first.run_id, "loss/current")] == list(range(1, 101))
    assert client.get_run(first.run_id).info.status == "FINISHED"
    assert client.get_run(first.run_id).data.tags["gaze.state"] == "succeeded"


def test_unfinished_runs_are_skipped_and_lora_only_on_request(tmp_path, client_for):
    root = tmp_path / "runs"
    running = rf.make_run(root, "sd15-standard", loss=rf.converging(20), state="running")
    done = rf.make_run(root, "sd15-smoke", loss=rf.converging(20))
    (done / runs.RUN).write_text(json.dumps({"model": "/m", "output_name": "smoke", "family": "sd15",
                                             "sd_scripts": "/s", "script": "train_network.py"}))
    for name in ("smoke.safetensors", "smoke-step00000010.safetensors"):
        (done / "output" / name).parent.mkdir(parents=True, exist_ok=True)
        (done / "output" / name).write_bytes(b"x" * 64)
    skipped, exported = export_runs([running, done], runs_dir=root, with_lora=True, experiment="ablation",
                                    log=lambda _m: None)
    assert skipped.action == "skipped" and "is lost: only runs that ended are exported" in skipped.message
    assert exported.action == "created" and "no report yet: `gaze report` it" in exported.message
    client = client_for(root)
    run = only_run(client, "ablation")
    assert {"lora/smoke.safetensors", "lora/smoke-step00000010.safetensors"} <= artifacts(client, run.info.run_id)


def test_cli_exports_a_sweeps_members_into_a_given_store(tmp_path, client_for, monkeypatch):
    root = tmp_path / "runs"
    members = [glitch_run(root, sample_steps=()), rf.make_run(root, "sd15-standard", loss=rf.converging(30))]
    sweep = root / "sweeps" / "20240101T120000Z-abcdef"
    sweep.mkdir(parents=True)
    write_sweep(sweep, SweepRecord(kind="sweep", baseline="sd15-standard", members=[
        Member(spec=m.parent.name, run_dir=str(m)) for m in members]))
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "elsewhere"
    store.mkdir()
    uri = default_store(store)
    result = CliRunner().invoke(main, ["export", "mlflow", str(sweep), "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert result.output.count("created: ") == 2
    client = client_for(store)
    found = client.search_runs([client.get_experiment_by_name("sd15-standard").experiment_id])
    assert sorted(r.data.tags["gaze.run"] for r in found) == sorted(f"{m.parent.name}/{m.name}" for m in members)
    again = CliRunner().invoke(main, ["export", "mlflow", str(sweep), "--tracking-uri", uri])
    assert again.output.count("unchanged: ") == 2, again.output
    assert not (root / "mlflow.db").exists()  # a given URI is used instead of the runs folder's store


def test_metric_names_keep_what_mlflow_accepts():
    assert metric_key("loss/validation/step_average") == "loss/validation/step_average"
    assert metric_key("lr/d*lr/unet") == "lr/d_lr/unet"


def test_a_missing_extra_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(GazeError, match=r"install the mlflow extra with `make setup-trackers` "
                                        r"\(pip install -e '\.\[mlflow\]'\)"):
        require_mlflow()
    run_dir = rf.make_run(tmp_path, "sd15-standard", loss=rf.converging(10))
    result = CliRunner().invoke(main, ["export", "mlflow", str(run_dir)])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("error: gaze export mlflow needs MLflow")
