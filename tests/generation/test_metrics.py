"""Weight-free image metrics on images built to have a known answer, and the direction each moves."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from wrapper.generation import metrics as m

RNG = np.random.default_rng(0)


def flat(value=(0.5, 0.5, 0.5), size=64) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, np.float32), (size, size, 3)).copy()


def noise(size=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size, 3), dtype=np.float32)


def photo_like(size=128, seed=0) -> np.ndarray:
    """Smooth colour gradients and soft shapes: a stand-in for a photograph."""
    y, x = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(seed)
    img = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (x * rng.uniform(0.5, 2) + rng.uniform())),
                    0.5 + 0.4 * np.cos(2 * np.pi * (y * rng.uniform(0.5, 2))), x * y], axis=-1)
    return img.astype(np.float32)


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"), np.float32) / 255


def test_a_flat_grey_image_has_no_colour_contrast_or_texture():
    grey = flat()
    assert m.colourfulness(grey) == 0 and m.saturation(grey) == 0 and m.contrast(grey) == 0
    assert m.high_frequency(grey) == 0


def test_colourfulness_and_saturation_grow_with_colour():
    assert m.colourfulness(flat((1, 0, 0))) > m.colourfulness(flat((0.6, 0.4, 0.4))) > 0
    assert m.saturation(flat((1, 0, 0))) == pytest.approx(1.0)
    assert m.saturation(flat((0.5, 0.25, 0.25))) == pytest.approx(0.5)


def test_hasler_suesstrunk_by_hand():
    rgb = noise(8)
    r, g, b = (rgb[..., i].astype(np.float64) * 255 for i in range(3))
    rg, yb = r - g, (r + g) / 2 - b
    expected = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    assert m.colourfulness(rgb) == pytest.approx(expected, rel=1e-5)


def test_contrast_is_largest_for_black_and_white_halves():
    halves = flat((0, 0, 0))
    halves[:, 32:] = 1
    assert m.contrast(halves) == pytest.approx(0.5) and m.contrast(noise()) < 0.5


def test_noise_has_more_high_frequency_energy_than_a_photo():
    assert m.high_frequency(noise()) > 0.8 > 0.2 > m.high_frequency(photo_like())


def test_jpeg_at_quality_5_is_blockier_than_at_95():
    base = photo_like(256)
    low, high = m.blockiness(jpeg(base, 5)), m.blockiness(jpeg(base, 95))
    assert low > 1.5 and abs(high - 1) < 0.3 and low > high


def test_metrics_take_a_stack_of_images_at_once():
    stack = np.stack([flat(), noise()])
    for fn in m.PER_IMAGE.values():
        values = fn(stack)
        assert values.shape == (2,)
        assert values[1] == pytest.approx(fn(stack[1]), rel=1e-5)


def test_identical_seeds_are_a_collapsed_cell():
    same = [noise(64, 1)] * 3
    different = [noise(64, s) for s in (1, 2, 3)]
    grey = [x[..., 0] for x in same]
    assert m.mean_pairwise_ssim(grey) == pytest.approx(1.0)
    assert m.mean_pairwise_ssim([x[..., 0] for x in different]) < 0.1
    assert m.mean_pairwise_ssim(grey[:1]) is None


def test_an_exact_copy_of_a_training_image_is_memorised():
    training = [photo_like(64, s).mean(axis=-1) for s in range(4)]
    assert m.nearest_ssim(training[2].copy(), training) == pytest.approx(1.0)
    assert m.nearest_ssim(noise(64, 9)[..., 0], training) < 0.2
    assert m.nearest_ssim(training[0], []) is None


def test_every_metric_says_what_it_measures_and_reveals():
    assert len({x.name for x in m.METRICS}) == len(m.METRICS)
    for metric in m.METRICS:
        assert metric.measures and metric.direction and metric.reveals
    assert set(m.PER_IMAGE) <= set(m.BY_NAME)


def test_the_readme_says_what_every_metric_measures_and_reveals():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for metric in m.METRICS:
        assert f"| `{metric.name}` | {metric.measures} | {metric.direction} | {metric.reveals} |" in readme
