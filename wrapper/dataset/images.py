"""Pixel work for dataset preparation: decode, orient, convert to RGB, crop, resize, encode.

Speed comes from JPEG DCT scaling (Pillow's `draft`): a camera JPEG is decoded at 1/2, 1/4
or 1/8 size whenever the crop still covers the target at that scale, and only then
resampled with LANCZOS. Pillow is imported inside the functions so `gaze --help` stays fast.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from wrapper.recipe.model import MAX_SIDE, MIN_SIDE

if TYPE_CHECKING:
    from PIL import Image

Size = tuple[int, int]
Box = tuple[float, float, float, float]
Format = Literal["webp", "png", "bmp"]
FORMATS: tuple[Format, ...] = ("webp", "png", "bmp")
EXTENSION = {"webp": ".webp", "png": ".png", "bmp": ".bmp", "jpeg": ".jpg"}
# What sd-scripts v0.10.1 trains on (train_util.IMAGE_EXTENSIONS, without optional plugins).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Its glob is case-sensitive: only these spellings are found.
SD_SCRIPTS_SUFFIXES = frozenset(IMAGE_SUFFIXES) | {s.upper() for s in IMAGE_SUFFIXES}
# Image formats it skips (AVIF and JPEG XL only with plugins gaze does not install): named, not ignored.
OTHER_IMAGE_SUFFIXES = (
    ".gif", ".tif", ".tiff", ".avif", ".jxl", ".heic", ".heif", ".jp2", ".j2k", ".jfif", ".jpe", ".ico",
    ".tga", ".psd", ".ppm", ".pgm", ".pbm", ".pnm", ".pcx", ".dds", ".qoi", ".svg",
)  # fmt: skip
# The sizes gaze prepares and audits at, per side: 64 px (8 latent pixels) is sd-scripts' bucket step for
# SD1.x/2.x; 8192 is past any SD training resolution, yet small enough that a typo cannot exhaust memory.
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height
WEBP_MAX_SIDE = 16383


@dataclass(frozen=True)
class Geometry:
    """What happens to the framing. `kind` names the operation."""

    kind: Literal["crop-orientation", "uncropped", "stretch"]
    portrait: Size = (832, 1216)
    landscape: Size = (1216, 832)
    square: Size | None = None  # None: a square image gets the portrait size
    size: Size | None = None  # the fixed size of "stretch"

    def target(self, width: int, height: int) -> Size | None:
        """The output size for an (oriented) input size; None keeps the size."""
        if self.kind == "uncropped":
            return None
        if self.kind == "stretch":
            return self.size
        if width == height:
            return self.square or self.portrait
        return self.portrait if height > width else self.landscape


def size_problems(label: str, size: object) -> list[str]:
    """A size must be two whole numbers of pixels, each MIN_SIDE..MAX_SIDE (None: not set)."""
    if size is None:
        return []
    if not (isinstance(size, tuple | list) and len(size) == 2 and all(type(v) is int for v in size)):
        return [f"{label} {size!r} is not a pair of whole numbers"]
    if not all(MIN_SIDE <= v <= MAX_SIDE for v in size):
        return [f"{label} {size[0]}x{size[1]}: each side must be {MIN_SIDE}..{MAX_SIDE} px"]
    return []


def centre_crop(width: int, height: int, target: Size) -> tuple[int, int, int, int]:
    """The largest centred box of the target's aspect ratio inside width x height."""
    tw, th = target
    if width * th > height * tw:  # too wide: trim the sides
        crop = max(1, min(width, round(height * tw / th)))
        left = (width - crop) // 2
        return left, 0, left + crop, height
    crop = max(1, min(height, round(width * th / tw)))
    top = (height - crop) // 2
    return 0, top, width, top + crop


def dct_scale(box: tuple[int, int, int, int], target: Size) -> int:
    """The largest JPEG decode reduction (8, 4, 2 or 1) that keeps the box at least target-sized."""
    w, h = box[2] - box[0], box[3] - box[1]
    for scale in (8, 4, 2):
        if w // scale >= target[0] and h // scale >= target[1]:
            return scale
    return 1


def orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent or unreadable)."""
    try:
        value = img.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError):  # broken EXIF blocks are common; ignore them
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def to_rgb(img: Image.Image, background: Size | tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """8-bit RGB: alpha and tRNS transparency composited over `background`, 16-bit scaled down,
    CMYK/palette converted."""
    from PIL import Image

    if img.mode.startswith("I"):  # 16-bit grey ("I;16*") or 32-bit int holding 16-bit values
        img = _grey_to_8_bits(img)
    if has_alpha(img):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, tuple(background))
        flat.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return flat
    return img if img.mode == "RGB" else img.convert("RGB")


def _grey_to_8_bits(img: Image.Image) -> Image.Image:
    """8-bit grey from 16-bit grey, with alpha when a tRNS chunk names a transparent grey level
    (Pillow's own conversions drop it)."""
    import numpy as np
    from PIL import Image

    raw = np.asarray(img)
    grey = Image.fromarray(np.clip(raw.astype(np.float64) / 257.0 + 0.5, 0, 255).astype(np.uint8), "L")
    key = img.info.get("transparency")
    if not isinstance(key, int):
        return grey
    return Image.merge("LA", (grey, Image.fromarray(np.where(raw == key, 0, 255).astype(np.uint8), "L")))


def check_pixels(img: Image.Image) -> None:
    """Refuse what Pillow only warns about: more pixels than Image.MAX_IMAGE_PIXELS (its
    decompression-bomb guard; it raises only past twice that)."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    w, h = img.size
    if limit and w * h > limit:
        raise Image.DecompressionBombError(
            f"{w}x{h} = {w * h} pixels, over Pillow's limit of {limit} (a decompression-bomb guard); shrink it"
        )


@contextmanager
def quiet_bomb_warnings() -> Iterator[None]:
    """Silence Pillow's DecompressionBombWarning: check_pixels turns the same images into errors."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def render(
    path: Path,
    geometry: Geometry,
    background: tuple[int, int, int] = (255, 255, 255),
) -> tuple[Image.Image, Size, bool]:
    """Decode `path` and apply `geometry`: (RGB image, oriented source size, upscaled?).

    Raises OSError (or Pillow's errors) for unreadable, truncated or non-image files, and
    Image.DecompressionBombError for images over Pillow's pixel limit.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        check_pixels(img)
        if img.format != "JPEG":  # only JPEGs decode at reduced size; decode the rest before reading EXIF,
            img.load()  # whose reader would otherwise load the pixels itself and swallow their errors
        orient = orientation(img)
        rotated = orient in ROTATED
        stored = img.size
        oriented = (stored[1], stored[0]) if rotated else stored
        target = geometry.target(*oriented)
        box: tuple[int, int, int, int] = (0, 0, *oriented)
        if target and geometry.kind == "crop-orientation":
            box = centre_crop(*oriented, target)
        scale = dct_scale(box, target) if target and img.format == "JPEG" else 1
        if scale > 1:
            img.draft(None, (stored[0] // scale, stored[1] // scale))
            scale = round(stored[0] / img.size[0]) if img.size[0] else 1
        img.load()
        out = ImageOps.exif_transpose(img) if orient != 1 else img
        out = to_rgb(out, background)
    if target is None:
        return out, oriented, False
    scaled: Box = (box[0] / scale, box[1] / scale, box[2] / scale, box[3] / scale)
    upscaled = target[0] > box[2] - box[0] or target[1] > box[3] - box[1]
    return out.resize(target, Image.Resampling.LANCZOS, box=scaled), oriented, upscaled


def encode(img: Image.Image, fmt: Format) -> tuple[bytes, str]:
    """Lossless bytes in `fmt` and the file extension; WebP falls back to PNG past its size limit."""
    buf = io.BytesIO()
    if fmt == "webp" and max(img.size) <= WEBP_MAX_SIDE:
        # quality is the effort for lossless WebP; 10 and method 0 are fast and still lossless.
        img.save(buf, "WEBP", lossless=True, quality=10, method=0)
    elif fmt == "bmp":
        img.save(buf, "BMP")
    else:
        fmt = "png"
        img.save(buf, "PNG", compress_level=1)  # the default level 6 costs more than decoding
    return buf.getvalue(), EXTENSION[fmt]


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@dataclass(frozen=True)
class Probe:
    """What the audit needs to know about one image file."""

    size: Size  # stored pixel size, as sd-scripts sees it
    format: str
    mode: str
    orientation: int
    alpha: bool


def has_alpha(img: Image.Image) -> bool:
    """An alpha channel, or a tRNS colour (palette, grey, 16-bit grey or RGB images)."""
    return img.mode in ALPHA_MODES or "transparency" in img.info


def probe(data: bytes, decode: bool = True) -> Probe:
    """Read the header and, with `decode`, the pixels exactly as sd-scripts' load_image does
    (convert to RGB, copy into an array), so what fails there fails here."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        check_pixels(img)
        if decode:  # before reading EXIF: for PNG that would load the pixels and swallow their errors
            np.asarray(img if img.mode == "RGB" else img.convert("RGB"), np.uint8)
        return Probe(img.size, img.format or "?", img.mode, orientation(img), has_alpha(img))
