"""The HParams session of a run, read back by TensorBoard's own loader."""

from __future__ import annotations

import pytest
import runfactory as rf

from wrapper.runs import trackers

pytest.importorskip("tensorboard")


def test_hparams_are_read_back_by_tensorboard(tmp_path):
    run = rf.make_run(tmp_path, "sd15-standard+high-lr=3e-4", loss=rf.converging(200), modifiers=["high-lr=3e-4"],
                      glitches=["high-lr=3e-4"], values={"training": {"seed": 7, "max_train_steps": 200},
                                                          "optimizer": {"unet_lr": 3e-4}})
    folder = trackers.write_hparams(run)
    back = trackers.read_hparams(folder)
    assert back["hparams"]["recipe"] == "sd15-standard+high-lr=3e-4"
    assert back["hparams"]["glitches"] == "high-lr=3e-4" and back["hparams"]["tweaks"] == "none"
    assert back["hparams"]["seed"] == 7 and back["hparams"]["optimizer.unet_lr"] == pytest.approx(3e-4)
    assert back["hparams"]["state"] == "succeeded"
    assert 0.05 < back["metrics"]["gaze/final_loss"] < 0.15 and "gaze/loss_auc" in back["metrics"]
    trackers.write_hparams(run)  # rewriting replaces the session, never adds a second one
    assert len(list(folder.iterdir())) == 1
