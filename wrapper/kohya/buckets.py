"""Which aspect-ratio bucket sd-scripts puts an image in, reimplemented from v0.10.1.

Sources: library/model_util.py `make_bucket_resolutions`; library/train_util.py
`BucketManager.select_bucket`, `BucketManager.round_to_steps` and
`BaseDataset.adjust_min_max_bucket_reso_by_steps`; the no-bucket case in
`BaseDataset.make_buckets` (one predefined bucket of the training resolution).
sd-scripts reads the stored pixel size (imagesize), so EXIF orientation plays no part.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from wrapper.errors import DatasetError, did_you_mean
from wrapper.recipe import Buckets as BucketRules  # the one definition of bucket settings

Size = tuple[int, int]

# Our names (the recipe's Buckets group) and sd-scripts' names for the same settings.
_ALIASES = {
    "enabled": "enabled", "enable_bucket": "enabled", "enable": "enabled",
    "min_reso": "min_reso", "min_bucket_reso": "min_reso",
    "max_reso": "max_reso", "max_bucket_reso": "max_reso",
    "reso_steps": "reso_steps", "bucket_reso_steps": "reso_steps",
    "no_upscale": "no_upscale", "bucket_no_upscale": "no_upscale",
}  # fmt: skip


def bucket_rules(spec: Mapping | object | None) -> BucketRules:
    """Rules from a mapping (our or sd-scripts' key names) or a recipe's Buckets; None means buckets off."""
    if spec is None:
        return BucketRules(enabled=False)
    if isinstance(spec, BucketRules):
        return spec
    items = dict(spec) if isinstance(spec, Mapping) else {k: getattr(spec, k) for k in _attrs(spec)}
    values = {}
    for key, value in items.items():
        if key not in _ALIASES:
            raise DatasetError(f"bucket setting {key!r} is unknown{did_you_mean(key, _ALIASES)}")
        values[_ALIASES[key]] = value
    return BucketRules(**values)


def _attrs(obj: object) -> list[str]:
    return [k for k in _ALIASES if hasattr(obj, k)]


@dataclass(frozen=True)
class Placement:
    bucket: Size  # the bucket resolution the image is trained at
    resized: Size  # the size it is scaled to before the crop to the bucket
    upscaled: bool  # True when it is enlarged to get there


def bucket_resolutions(resolution: Size, min_size: int, max_size: int, steps: int) -> list[Size]:
    """All buckets for a training resolution: same area or less, sides in [min_size, max_size]."""
    area = resolution[0] * resolution[1]
    side = int(math.sqrt(area) // steps) * steps
    resos = {(side, side)}
    for width in range(min_size, max_size + 1, steps):
        height = min(max_size, int((area // width) // steps) * steps)
        if height >= min_size:
            resos.update({(width, height), (height, width)})
    return sorted(resos)


def adjust_limits(rules: BucketRules) -> tuple[int, int]:
    """min_reso rounded down and max_reso rounded up to a multiple of reso_steps."""
    lo, hi, step = rules.min_reso, rules.max_reso, rules.reso_steps
    return lo - lo % step, hi if hi % step == 0 else hi + step - hi % step


def place(size: Size, resolution: Size, rules: BucketRules) -> Placement:
    """Where sd-scripts puts an image of `size` (stored width, height)."""
    width, height = size
    aspect = width / height
    if rules.enabled and rules.no_upscale:
        return _place_no_upscale(size, resolution, rules.reso_steps)
    if rules.enabled:
        lo, hi = adjust_limits(rules)
        resos = bucket_resolutions(resolution, lo, hi, rules.reso_steps)
    else:
        resos = [tuple(resolution)]
    reso = size if size in resos else min(resos, key=lambda r: abs(r[0] / r[1] - aspect))
    # Scale so the image covers the bucket: match the side that is relatively shorter.
    scale = reso[1] / height if aspect > reso[0] / reso[1] else reso[0] / width
    resized = (int(width * scale + 0.5), int(height * scale + 0.5))
    return Placement((reso[0], reso[1]), resized, scale > 1)


def _place_no_upscale(size: Size, resolution: Size, steps: int) -> Placement:
    width, height = size
    aspect = width / height
    max_area = resolution[0] * resolution[1]
    resized = size
    if width * height > max_area:
        # Shrink to the maximum area, then snap one side to the step grid; keep the snap
        # (width or height first) whose aspect ratio stays closer to the image's.
        w = math.sqrt(max_area * aspect)
        h = max_area / w
        w_snap = _round_to(w, steps)
        ar_w = w_snap / _round_to(w_snap / aspect, steps)
        h_snap = _round_to(h, steps)
        ar_h = _round_to(h_snap * aspect, steps) / h_snap
        if abs(ar_w - aspect) < abs(ar_h - aspect):
            resized = (w_snap, int(w_snap / aspect + 0.5))
        else:
            resized = (int(h_snap * aspect + 0.5), h_snap)
    bucket = (resized[0] - resized[0] % steps, resized[1] - resized[1] % steps)
    return Placement(bucket, resized, False)


def _round_to(x: float, steps: int) -> int:
    x = int(x + 0.5)
    return x - x % steps
