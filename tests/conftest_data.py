"""Real image and caption files for the prep and audit tests (imported by them, not a plugin)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image


def photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Photo-like RGB content: smooth colour gradients plus mild noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = Image.fromarray(rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    pixels = np.asarray(base, dtype=np.int16) + rng.normal(0, 4, (h, w, 3)).astype(np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_image(path: Path, img: Image.Image, caption: str | None = "a photo", **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **save)
    if caption is not None:
        path.with_suffix(".txt").write_text(caption, encoding="utf-8")
    return path


def exif_rotated_jpeg(path: Path, stored: tuple[int, int], orientation: int = 6) -> Path:
    """A JPEG stored at `stored` size with a red block in its stored top-left corner."""
    img = photo(stored, 3)
    img.paste((255, 0, 0), (0, 0, stored[0] // 4, stored[1] // 4))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return write_image(path, img, exif=exif.tobytes(), quality=95)


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root (symlinks by their target text)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[p.relative_to(root).as_posix()] = "link:" + str(p.readlink())
        elif p.is_file():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def naive_crop(path: Path, target: tuple[int, int]) -> Image.Image:
    """Reference: full decode, centre crop to the target aspect, LANCZOS resize."""
    from PIL import ImageOps

    from wrapper.dataset.images import centre_crop

    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    return img.crop(centre_crop(*img.size, target)).resize(target, Image.LANCZOS)
