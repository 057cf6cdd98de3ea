"""sd-scripts' validation (v0.10.1): how it splits a subset, and how to read its logged averages back.

The split (library/train_util.py `split_train_val`): each subset's images are shuffled with the
validation seed; training takes the first ceil(n * (1 - split)), validation the last round(n * split).
The two can overlap by an image (n = 8, split = 0.1: 8 trained on, 1 of them also validated on), so a
split is chosen that holds out whole images only.

The logged average (train_network.py): `loss/validation/step_average` is a `LossRecorder` average
over every loss of every validation pass of the first epoch (they are appended), and afterwards over
a list whose first pass is overwritten by each new pass while the rest of the first epoch's passes stay.
`pass_means` undoes this exactly, given which passes fell in the first epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from wrapper.errors import ConfigError

#: Timesteps each validation batch is evaluated at (NUM_VALIDATION_TIMESTEPS in train_network.py).
TIMESTEPS_PER_IMAGE = 4
#: Evaluations over a run when the recipe leaves validate_every_n_steps open.
DEFAULT_EVALUATIONS = 20


def split_counts(images: int, split: float) -> tuple[int, int]:
    """(trained on, validated on) of a subset of `images` images, as sd-scripts computes them."""
    return math.ceil(images * (1 - split)), round(images * split)


def is_clean(images: int, split: float) -> bool:
    """The split holds out at least one image and trains on none of the held-out ones."""
    train, held = split_counts(images, split)
    return held >= 1 and train >= 1 and train + held <= images


def clean_split(subset_images: Sequence[int], wanted: float) -> float:
    """The split to give sd-scripts: `wanted` when it is clean in every subset with images, else the
    closest one that is (holding out max(1, round(n * wanted)) images of a single subset of n)."""
    counts = [n for n in subset_images if n > 0]
    if not counts:
        raise ConfigError("validation: the prepared dataset has no images to hold out")
    if all(is_clean(n, wanted) for n in counts):
        return wanted
    # a split s with floor(n*s) = round(n*s) = k holds out k images and trains on exactly n - k
    candidates = {(max(1, round(n * wanted)) + 0.25) / n for n in counts}
    good = sorted((c for c in candidates if all(is_clean(n, c) for n in counts)), key=lambda c: abs(c - wanted))
    if not good:
        sizes = ", ".join(str(n) for n in counts)
        raise ConfigError(
            f"validation={wanted:g}: with subsets of {sizes} images no split holds out whole images in every "
            "subset (sd-scripts trains on the first ceil(n*(1-split)) and validates on the last round(n*split) "
            "of each); use one image folder, or subsets of at least 2 images each with a split near "
            f"{wanted:g} that divides them"
        )
    return good[0]


def every_n_steps(explicit: int | None, max_train_steps: int) -> int:
    """How often step validation runs: the recipe's value, else about DEFAULT_EVALUATIONS times a run."""
    return explicit if explicit is not None else max(1, max_train_steps // DEFAULT_EVALUATIONS)


def pass_means(averages: Sequence[float], first_epoch: int) -> list[float]:
    """Each validation pass's own mean loss, from the averages sd-scripts logged after each pass.

    `first_epoch` is how many of the passes ran in the first epoch of the trainer's process (its
    recorder starts empty: 0 when a run was resumed after its first epoch). Every pass adds the same
    number of losses (validation images x timesteps), so block means stand for the losses.
    """
    blocks: list[float] = []
    out: list[float] = []
    for i, average in enumerate(averages):
        if i < first_epoch:  # appended: the average is over all blocks so far
            mean = (len(blocks) + 1) * average - sum(blocks)
            blocks.append(mean)
        else:  # overwrites the first block (a fresh recorder gets its first one here)
            rest = sum(blocks[1:])
            mean = max(len(blocks), 1) * average - rest
            if blocks:
                blocks[0] = mean
            else:
                blocks.append(mean)
        out.append(mean)
    return out
