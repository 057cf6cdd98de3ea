"""Synthetic captioned fashion "photos": portrait and landscape images with captions from a small vocabulary.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from wrapper.demo.cache import fresh_folder, is_complete
from wrapper.errors import DatasetError

_WORDS = {  # fashion vocabulary for captions and for learning the tokenizer's merges
    "colour": "black|ivory|camel|navy|olive|burgundy|charcoal|cream|emerald|rust",
    "fabric": "wool|linen|silk|denim|leather|cashmere|cotton|tweed|velvet|satin",
    "garment": "trench coat|blazer|slip dress|pleated skirt|bomber jacket|cardigan|wide-leg trousers|"
    "straight jeans|poplin shirt|knit sweater",
    "detail": "oversized|tailored|cropped|belted|double-breasted|ribbed|quilted|draped|high-waisted|relaxed fit",
    "setting": "studio lighting|street style|runway|editorial photo|catalog shot|natural light|city sidewalk|"
    "white backdrop|golden hour|full body",
}


WORDS = {kind: words.split("|") for kind, words in _WORDS.items()}


def caption(i: int) -> str:
    """A deterministic fashion caption; every fourth is long enough to exceed 75 CLIP tokens."""
    rng = random.Random(i)

    def pick(kind: str) -> str:
        return rng.choice(WORDS[kind])

    def look() -> str:
        return " ".join(pick(kind) for kind in ("detail", "colour", "fabric", "garment"))

    short = f"{look()}, {pick('setting')}"
    if i % 4 != 3:
        return short
    extra = ", ".join(f"layered over {look()} with {pick('colour')} accessories" for _ in range(7))
    return f"a model wearing a {short}, {extra}, {pick('setting')}, sharp focus, high detail"


def _image(size: tuple[int, int], rng: random.Random) -> Any:
    from PIL import Image, ImageDraw

    w, h = size
    palette = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(4)]
    ramp = Image.linear_gradient("L").rotate(rng.choice([0, 90, 180, 270])).resize(size)
    img = Image.composite(Image.new("RGB", size, palette[0]), Image.new("RGB", size, palette[1]), ramp)
    draw = ImageDraw.Draw(img)
    cx, top = w // 2 + rng.randint(-w // 8, w // 8), h // 6
    draw.ellipse([cx - w // 14, top - h // 14, cx + w // 14, top + h // 14], fill=palette[2])
    body = [
        (cx - w // 6, top + h // 10),
        (cx + w // 6, top + h // 10),
        (cx + w // 4, h - h // 10),
        (cx - w // 4, h - h // 10),
    ]
    draw.polygon(body, fill=palette[3])
    for _ in range(rng.randint(2, 5)):
        x, y, r = rng.randrange(w), rng.randrange(h), rng.randint(8, min(w, h) // 8)
        draw.rectangle([x - r, y - r, x + r, y + r], outline=palette[2], width=3)
    return img


def synth_dataset(
    dest: Path, *, n: int = 8, seed: int = 0, sizes: tuple[tuple[int, int], ...] = ((512, 768), (768, 512))
) -> Path:
    """Write `n` PNG images (sizes are (width, height), used in turn) with `.txt` captions into `dest`."""
    dest = Path(dest)
    params = {"kind": "dataset", "n": n, "seed": seed, "sizes": [list(s) for s in sizes]}
    if is_complete(dest, params):
        return dest
    with fresh_folder(dest, params, DatasetError) as tmp:
        rng = random.Random(seed)
        for i in range(n):
            _image(tuple(sizes[i % len(sizes)]), rng).save(tmp / f"{i:03d}.png")
            (tmp / f"{i:03d}.txt").write_text(caption(seed * 1000 + i) + "\n")
    return dest
