"""Image metrics that need no model weights: numbers for the glitches the research log names.

Every function takes float32 RGB arrays in [0, 1] (height x width x 3, or a stack of them) and is
pure numpy (SSIM: scikit-image). `METRICS` says, for each number, what it measures, which way is
"more", and which glitch of the log it is meant to reveal; reports print that beside the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

#: Side of the downscaled grey images that diversity and memorisation compare (SSIM).
COMPARE_SIDE = 64
#: Frequencies above this share of the Nyquist radius count as "high" in the spectrum.
HIGH_FREQUENCY_RADIUS = 0.25


@dataclass(frozen=True)
class Metric:
    name: str
    measures: str
    direction: str  # what a larger value means
    reveals: str  # the research log's glitch it is meant to show
    needs: str = ""  # "" (weight-free), or the [metrics] setting that names its weights


METRICS = (
    Metric("colourfulness", "Hasler-Süsstrunk colourfulness of the image", "more vivid colour",
           "collapsed contrast and colour casts (high learning rate)"),
    Metric("saturation", "mean HSV saturation", "more saturated", "washed-out or burnt colour (high learning rate)"),
    Metric("contrast", "RMS contrast: standard deviation of luminance", "more contrast",
           "collapsed contrast (high learning rate, over-training)"),
    Metric("high_frequency", f"share of spectral energy above {HIGH_FREQUENCY_RADIUS:g} of Nyquist",
           "more fine texture or noise", "texture glitches and noise (high learning rate, few steps)"),
    Metric("blockiness", "8x8 JPEG block-boundary discontinuity over in-block differences (1 = none)",
           "more JPEG blocking", "compression artefacts (JPEG injection)"),
    Metric("seed_similarity", f"mean pairwise SSIM of one grid cell's seeds at {COMPARE_SIDE} px",
           "less diversity across seeds", "mode collapse (over-training)"),
    Metric("train_similarity", f"largest SSIM against the training images at {COMPARE_SIDE} px",
           "closer to one training image", "memorisation (over-training, few images)"),
    Metric("clip_score", "CLIP cosine similarity of image and prompt x 100", "closer to the prompt",
           "semantic drift (training the text encoder, caption dropout)", "clip"),
    Metric("clip_train_similarity", "cosine of the CLIP image embedding with the training images' mean embedding",
           "closer in style",
           "style fidelity (mismatched base, uncropped training)", "clip"),
    Metric("dino_train_similarity", "cosine of the DINO embedding with the training images' mean embedding",
           "closer in content",
           "style and composition fidelity (random crops, mismatched base)", "dino"),
    Metric("kid", "kernel inception distance to the training images, on DINO features", "further from the data",
           "distribution shift (any glitch); KID, not FID, at these sample sizes", "dino"),
    Metric("lpips_diversity", "mean pairwise LPIPS distance of one cell's seeds", "more diverse",
           "mode collapse (over-training)", "lpips"),
)
BY_NAME = {m.name: m for m in METRICS}


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of RGB in [0, 1]."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def colourfulness(rgb: np.ndarray) -> np.ndarray:
    """Hasler & Süsstrunk (2003): sigma_rgyb + 0.3 mu_rgyb, on 0-255 values; 0 for any grey image."""
    import numpy as np

    r, g, b = (rgb[..., i] * 255 for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    axes = (-2, -1)
    sigma = np.sqrt(rg.std(axis=axes) ** 2 + yb.std(axis=axes) ** 2)
    mu = np.sqrt(rg.mean(axis=axes) ** 2 + yb.mean(axis=axes) ** 2)
    return sigma + 0.3 * mu


def saturation(rgb: np.ndarray) -> np.ndarray:
    """Mean HSV saturation: (max - min) / max per pixel, 0 where max is 0."""
    import numpy as np

    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    sat = np.divide(high - low, high, out=np.zeros_like(high), where=high > 0)
    return sat.mean(axis=(-2, -1))


def contrast(rgb: np.ndarray) -> np.ndarray:
    """RMS contrast: the standard deviation of luminance (0 for a flat image, 0.5 at most)."""
    return luminance(rgb).std(axis=(-2, -1))


def _high_mask(height: int, width: int) -> np.ndarray:
    import numpy as np

    fy = np.fft.fftfreq(height)[:, None] * 2  # in units of Nyquist
    fx = np.fft.rfftfreq(width)[None, :] * 2
    return np.hypot(fy, fx) > HIGH_FREQUENCY_RADIUS


def high_frequency(rgb: np.ndarray) -> np.ndarray:
    """Share of the luminance spectrum's energy (mean removed) above the high-frequency radius."""
    import numpy as np

    y = luminance(rgb)
    y = y - y.mean(axis=(-2, -1), keepdims=True)
    power = np.abs(np.fft.rfft2(y)) ** 2
    total = power.sum(axis=(-2, -1))
    high = (power * _high_mask(*y.shape[-2:])).sum(axis=(-2, -1))
    return np.divide(high, total, out=np.zeros_like(total), where=total > 0)


def blockiness(rgb: np.ndarray) -> np.ndarray:
    """Mean absolute luminance step across 8x8 block boundaries over the mean step inside blocks.

    About 1 for an image without blocking; JPEG at low quality makes the boundaries stand out.
    """
    import numpy as np

    y = luminance(rgb) * 255
    dx, dy = np.abs(np.diff(y, axis=-1)), np.abs(np.diff(y, axis=-2))
    col, row = np.arange(dx.shape[-1]) % 8 == 7, np.arange(dy.shape[-2]) % 8 == 7
    across = dx[..., col].mean(axis=(-2, -1)) + dy[..., row, :].mean(axis=(-2, -1))
    inside = dx[..., ~col].mean(axis=(-2, -1)) + dy[..., ~row, :].mean(axis=(-2, -1))
    return (across + 1e-3) / (inside + 1e-3)


PER_IMAGE = {"colourfulness": colourfulness, "saturation": saturation, "contrast": contrast,
             "high_frequency": high_frequency, "blockiness": blockiness}


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two grey images in [0, 1] (scikit-image, 7 px windows)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, data_range=1.0))


def mean_pairwise_ssim(greys: list[np.ndarray]) -> float | None:
    """Mean SSIM over every pair of images (one grid cell's seeds); None for fewer than two."""
    pairs = [(i, j) for i in range(len(greys)) for j in range(i + 1, len(greys))]
    return sum(ssim(greys[i], greys[j]) for i, j in pairs) / len(pairs) if pairs else None


def nearest_ssim(grey: np.ndarray, references: list[np.ndarray]) -> float | None:
    """The largest SSIM of an image against any reference image (the training set); None without any."""
    return max((ssim(grey, ref) for ref in references), default=None)
