"""sd-scripts' validation split and its logged averages, checked against sd-scripts' own code where it can run."""

from __future__ import annotations

import importlib.util
import math
import os
import random
import sys
from pathlib import Path

import pytest

from wrapper.errors import ConfigError
from wrapper.kohya.validation import clean_split, every_n_steps, is_clean, pass_means, split_counts


@pytest.mark.parametrize(("n", "split", "expected"), [(8, 0.1, (8, 1)), (8, 0.25, (6, 2)), (10, 0.2, (8, 2)),
                                                      (8, 0.15625, (7, 1)), (3, 0.5, (2, 2))])
def test_split_counts_follow_sd_scripts_rule(n, split, expected):
    assert split_counts(n, split) == expected
    assert is_clean(n, split) == (sum(expected) <= n and expected[1] >= 1)


@pytest.mark.parametrize("n", range(2, 60))
@pytest.mark.parametrize("wanted", [0.05, 0.1, 0.2, 0.3])
def test_clean_split_holds_out_whole_images_near_the_wanted_share(n, wanted):
    split = clean_split([n], wanted)
    train, held = split_counts(n, split)
    assert train + held == n and held == max(1, round(n * wanted)) or split == wanted
    assert is_clean(n, split)


def test_clean_split_keeps_a_clean_wanted_split_and_refuses_impossible_ones():
    assert clean_split([10, 0], 0.2) == 0.2
    with pytest.raises(ConfigError, match="subsets of 1 images"):
        clean_split([1], 0.1)
    with pytest.raises(ConfigError, match="no images"):
        clean_split([0], 0.1)


def test_every_n_steps_defaults_to_about_twenty_evaluations():
    assert every_n_steps(None, 8000) == 400
    assert every_n_steps(None, 4) == 1
    assert every_n_steps(7, 8000) == 7


def _recorder_class():
    """sd-scripts' own LossRecorder, when the checkout and the train extra are here."""
    checkout = os.environ.get("SD_SCRIPTS_DIR")
    if not checkout or importlib.util.find_spec("torch") is None:
        pytest.skip("needs SD_SCRIPTS_DIR and the train extra")
    sys.path.insert(0, checkout)
    try:
        from library.train_util import LossRecorder
    finally:
        sys.path.remove(checkout)
        for name in [m for m in sys.modules if m == "library" or m.startswith("library.")]:
            del sys.modules[name]  # sd-scripts' package name is generic: leave nothing behind
    return LossRecorder


def _logged(recorder_class, passes: list[list[float]], first_epoch: int, resumed_in_epoch: int = 0) -> list[float]:
    """The step_average values train_network.py logs for these passes (losses per pass), the first
    `first_epoch` passes in epoch `resumed_in_epoch`, the rest in later epochs."""
    recorder = recorder_class()
    out = []
    for i, losses in enumerate(passes):
        epoch = resumed_in_epoch if i < first_epoch else resumed_in_epoch + 1 + i
        for position, loss in enumerate(losses):
            recorder.add(epoch=epoch, step=position, loss=loss)
        out.append(recorder.moving_average)
    return out


@pytest.mark.sd_scripts
@pytest.mark.parametrize(("passes", "first_epoch", "resumed_in"), [(6, 3, 0), (5, 5, 0), (5, 1, 0), (4, 0, 2),
                                                                   (7, 2, 0)])
def test_pass_means_undo_sd_scripts_loss_recorder(passes, first_epoch, resumed_in):
    recorder_class = _recorder_class()
    rng = random.Random(passes * 10 + first_epoch)
    losses = [[rng.uniform(0.01, 0.3) for _ in range(8)] for _ in range(passes)]
    logged = _logged(recorder_class, losses, first_epoch if resumed_in == 0 else 0, resumed_in)
    decoded = pass_means(logged, first_epoch if resumed_in == 0 else 0)
    truth = [sum(p) / len(p) for p in losses]
    assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(decoded, truth, strict=True))
    if first_epoch > 1:
        assert not all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(logged, truth, strict=True))


def test_pass_means_of_a_constant_loss_are_that_loss():
    assert pass_means([0.2, 0.2, 0.2, 0.2], 2) == pytest.approx([0.2] * 4)


def test_sd_scripts_split_train_val_matches_the_counts():
    checkout = os.environ.get("SD_SCRIPTS_DIR")
    if not checkout:
        pytest.skip("needs SD_SCRIPTS_DIR")
    source = (Path(checkout) / "library" / "train_util.py").read_text()
    start = source.index("def split_train_val(")
    body = source[start:source.index("\nclass ImageInfo", start)]
    namespace: dict = {}
    header = "import math, random, logging\nfrom typing import List, Optional, Tuple\n"
    exec(compile(header + body, "split_train_val", "exec"), namespace)  # noqa: S102 - sd-scripts' own function
    for n in range(1, 40):
        for split in (0.1, 0.2, 0.25, 0.3, clean_split([n], 0.1) if n > 1 else 0.5):
            paths = [f"{i}.png" for i in range(n)]
            train, _ = namespace["split_train_val"](paths, [None] * n, True, split, 7)
            held, _ = namespace["split_train_val"](paths, [None] * n, False, split, 7)
            assert (len(train), len(held)) == split_counts(n, split)
            assert is_clean(n, split) == (not set(train) & set(held) and len(held) >= 1 and len(train) >= 1)
