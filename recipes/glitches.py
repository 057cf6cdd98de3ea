"""Glitch techniques and tweaks of the research log, as modifiers: functions Recipe -> Recipe.

Each applies to any recipe and combines with the others: `sd15-standard+no-bucket+high-lr=3e-4`.
Glitches are labelled as deliberate in every config, run folder and report; tweaks are not.
"""

from __future__ import annotations

from wrapper.errors import RecipeError
from wrapper.recipe import Recipe, evolve
from wrapper.recipe.registry import Modifier

OVERTRAIN_THRESHOLD = 5000  # the log: past 5000 steps a run counts as over-trained


def train_text_encoder(r: Recipe, _: str | None) -> Recipe:
    return evolve(r, training={"train_text_encoder": True})


def uncropped(r: Recipe, _: str | None) -> Recipe:
    longest = max(r.data.resolution)
    return evolve(r, prep={"mode": "uncropped"}, data={"buckets": {"enabled": True,
                  "max_reso": max(r.data.buckets.max_reso, 2 * longest if r.family == "sdxl" else 1024)}})


def no_bucket(r: Recipe, _: str | None) -> Recipe:
    # Without buckets (and without random crop) sd-scripts refuses any image that is not exactly
    # the resolution, so the preparation stretches every image to it: that distortion is the glitch.
    return evolve(r, prep={"mode": "stretch", "stretch_to": r.data.resolution}, data={"buckets": {"enabled": False}})


def crop_flip(r: Recipe, _: str | None) -> Recipe:
    return evolve(r, data={"random_crop": True, "flip": True})


def _scaled_lr(r: Recipe, value: str) -> Recipe:
    lr = float(value)
    ratio = r.optimizer.text_encoder_lr / r.optimizer.unet_lr
    return evolve(r, optimizer={"unet_lr": lr, "text_encoder_lr": lr * ratio})


def high_lr(r: Recipe, value: str | None) -> Recipe:
    if float(value) < 2e-4:
        raise RecipeError(f"high-lr={value}: the log's high learning rates start at 2e-4; use lr={value} instead")
    return _scaled_lr(r, value)


#: What a "part" of a caption is: a sentence. The log's captions are prose, sentences ending in ". ";
#: sd-scripts splits at caption_separator (str.split, so "." alone would also cut "1.5") and keeps or
#: drops each part on its own, then joins the kept ones with ", " (train_util process_caption).
SENTENCE_SEPARATOR = ". "


def _dropout_value(value: str) -> tuple[float | None, float | None]:
    """'0.1' or 'whole:0.1' (whole captions), 'part:0.3' (sentences), or both: 'whole:0.1,part:0.3'."""
    whole = part = None
    for item in value.split(","):
        kind, colon, rate = item.strip().rpartition(":")
        kind = kind if colon else "whole"
        if kind not in ("whole", "part") or (whole if kind == "whole" else part) is not None:
            raise ValueError(f"expected RATE, whole:RATE or part:RATE once each, got {item!r}")
        number = float(rate)
        if kind == "whole":
            whole = number
        else:
            part = number
    return whole, part


def caption_dropout(r: Recipe, value: str | None) -> Recipe:
    whole, part = _dropout_value(value)
    data: dict[str, object] = {} if whole is None else {"caption_dropout_rate": whole}
    if part is not None:
        data |= {"caption_tag_dropout_rate": part, "caption_separator": SENTENCE_SEPARATOR}
    return evolve(r, data=data)


def overtrain(r: Recipe, value: str | None) -> Recipe:
    steps = int(value)
    if steps <= OVERTRAIN_THRESHOLD:
        raise RecipeError(f"overtrain={value}: over-training means more than {OVERTRAIN_THRESHOLD} steps")
    return evolve(r, training={"max_train_steps": steps})


def mismatched_base(r: Recipe, value: str | None) -> Recipe:
    return r.replace(base_model=value)


def _jpeg_value(value: str) -> tuple[float, int]:
    fraction, _, quality = value.partition(":")
    return float(fraction), int(quality or 10)


def jpeg_inject(r: Recipe, value: str | None) -> Recipe:
    fraction, quality = _jpeg_value(value)
    return evolve(r, prep={"jpeg_fraction": fraction, "jpeg_quality": quality})


def lr(r: Recipe, value: str | None) -> Recipe:
    return _scaled_lr(r, value)


def steps(r: Recipe, value: str | None) -> Recipe:
    return evolve(r, training={"max_train_steps": int(value)})


def dim(r: Recipe, value: str | None) -> Recipe:
    new = int(value)
    return evolve(r, network={"dim": new, "alpha": r.network.alpha * new / r.network.dim})


def _validation_value(value: str) -> tuple[float, int | None]:
    fraction, _, every = value.partition(":")
    split = float(fraction)
    if not 0 < split < 1 or (every and int(every) < 1):
        raise ValueError(value)
    return split, int(every) if every else None


def validation(r: Recipe, value: str | None) -> Recipe:
    """A seeded hold-out through sd-scripts' own validation: the held-out images are not trained on, and
    each evaluation costs 4 forward passes per held-out image (no backward pass)."""
    split, every = _validation_value(value)
    return evolve(r, data={"validation_split": split}, training={"validate_every_n_steps": every})


_LR = frozenset({"high-lr", "lr"})
_STEPS = frozenset({"overtrain", "steps"})
_FRAMING = frozenset({"uncropped", "no-bucket"})

MODIFIERS = (
    Modifier("train-text-encoder", train_text_encoder, "train LoRA modules in the text encoder(s) too"),
    Modifier("uncropped", uncropped, "train on uncropped images, aspect-ratio buckets on", conflicts=_FRAMING),
    Modifier(
        "no-bucket", no_bucket, "buckets off: every image stretched to the fixed resolution", conflicts=_FRAMING
    ),
    Modifier("crop-flip", crop_flip, "random crop and horizontal flip augmentation"),
    Modifier("high-lr", high_lr, "learning rate 2e-4 or higher (text-encoder LR scaled alike)",
             default="2e-4", conflicts=_LR),
    Modifier("caption-dropout", caption_dropout, "drop the whole caption (RATE) or each sentence of it "
             "(part:RATE) with this probability", default="0.1", parse=_dropout_value),
    Modifier("overtrain", overtrain, "train far past 5000 steps", default="10000", conflicts=_STEPS, parse=int),
    Modifier("mismatched-base", mismatched_base,
             "train on a base checkpoint other than the family's own (a model name from settings)",
             default="mismatched", parse=str),
    Modifier("jpeg-inject", jpeg_inject, "re-encode a seeded fraction of images as low-quality JPEG (FRACTION:QUALITY)",
             default="0.25:10", parse=_jpeg_value),
    Modifier("lr", lr, "learning-rate tweak (text-encoder LR scaled alike)", glitch=False, default="5e-5",
             conflicts=_LR),
    Modifier("steps", steps, "step-count tweak", glitch=False, default="1200", conflicts=_STEPS, parse=int),
    Modifier("dim", dim, "network_dim tweak (alpha scaled alike)", glitch=False, default="192", parse=int),
    Modifier("validation", validation, "hold out a seeded FRACTION of the images (not trained on) and log a "
             "validation loss every EVERY steps (FRACTION[:EVERY]; default about 20 times a run); each "
             "evaluation costs 4 forward passes per held-out image", glitch=False, default="0.1",
             parse=_validation_value),
)
