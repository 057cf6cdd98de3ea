"""A real sd-scripts run with Weights & Biases on, offline: the W&B run gets the loss, no file gets the key.

wandb 0.31 keeps an offline run as a LevelDB-style log of its own protobuf records (run-<id>.wandb) and has
no Python reader for it any more; `wandb_records` reads the framing (checksums checked) and decodes every
record with wandb's own `Record` message, so the test sees what `wandb sync` would upload.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from recipes import builtin_registry
from wrapper.kohya.checkout import find_checkout
from wrapper.kohya.logs import LOSS_CURRENT
from wrapper.recipe import evolve
from wrapper.runs import layout as runs
from wrapper.runs.train import RunRequest, start_run

pytestmark = [pytest.mark.sd_scripts, pytest.mark.slow]
CACHE = Path(os.environ.get("GAZE_TEST_CACHE", Path(__file__).parents[2] / ".cache" / "test"))
KEY = "0123456789abcdef0123456789abcdef01234567"  # shaped like a real key (40 hex digits), valid nowhere
BLOCK, HEADER = 32768, struct.Struct("<IHB")  # wandb's log: 32 KiB blocks, (crc32, length, type) per chunk


def wandb_records(path: Path) -> Iterator:
    """Every record of an offline W&B run file, decoded with wandb's own protobuf schema."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0), "not a W&B run file"
    pos, pending = 7, b""
    while pos + HEADER.size <= len(data):
        room = BLOCK - pos % BLOCK
        crc, length, kind = HEADER.unpack(data[pos:pos + HEADER.size]) if room >= HEADER.size else (0, 0, 0)
        if kind == 0:  # the rest of a block is padding
            pos += room
            continue
        chunk = data[pos + HEADER.size:pos + HEADER.size + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, f"{path}: bad checksum at byte {pos}"
        pos += HEADER.size + length
        pending = chunk if kind in (1, 2) else pending + chunk  # full/first start a record, middle/last go on
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def history(records: list) -> list[dict]:
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def test_wandb_offline_run_gets_the_loss_and_no_file_gets_the_key(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from wrapper.demo.assets import ensure_demo_assets

    for name in ("WANDB_DIR", "WANDB_PROJECT", "WANDB_NAME", "WANDB_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # not the user's home folders
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))
    assets = ensure_demo_assets(CACHE, "sd15", log=lambda _m: None)
    recipe = evolve(builtin_registry().resolve("sd15-smoke"), training={"max_train_steps": 2})
    request = RunRequest(dataset=assets.dataset_dir, model=assets.model_path, runs_dir=tmp_path / "runs",
                         cache_dir=CACHE, checkout=find_checkout(), tokenizer_cache_dir=assets.tokenizer_cache_dir,
                         threads=2, trackers=("tensorboard", "wandb"))
    outcome = start_run(recipe, request, log=print, on_line=lambda _l: None)
    run_dir = outcome.run_dir
    assert outcome.status.state == "succeeded", (run_dir / "train.log").read_text()[-3000:]
    assert runs.read_run_info(run_dir).trackers == ["tensorboard", "wandb"]

    (run_file,) = run_dir.glob("logs/*/wandb/offline-run-*/run-*.wandb")  # sd-scripts' WANDB_DIR: logs/<stamp>/
    records = list(wandb_records(run_file))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.project, run.display_name) == ("sd15-smoke", run_dir.name)
    logged = {row["global_step"]: row[LOSS_CURRENT] for row in history(records) if LOSS_CURRENT in row}
    scalars = runs.read_run_scalars(run_dir)  # TensorBoard stays on: the report's source
    board = scalars[scalars["tag"] == LOSS_CURRENT]
    assert sorted(logged) == sorted(board["step"].astype(int)) == [1, 2]
    for step, value in zip(board["step"].astype(int), board["value"], strict=True):
        assert logged[step] == pytest.approx(value, rel=1e-6)  # TensorBoard keeps float32

    secret = KEY.encode()
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert leaked == [], "the W&B key was written into " + ", ".join(map(str, leaked))
