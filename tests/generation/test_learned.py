"""Metrics with model weights, on random-weight backbones built here, loaded through the same paths a
user's real weights take ([metrics] in gaze.toml: an open_clip checkpoint file and model config, a
DINOv2 folder, AlexNet weights); KID and CLIP score checked against small reference computations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("open_clip", reason="needs the metrics extra (pip install -e '.[metrics]')")
pytest.importorskip("lpips", reason="needs the metrics extra")
pytest.importorskip("torchmetrics", reason="needs the metrics extra")
pytest.importorskip("transformers", reason="needs the metrics extra")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from wrapper.generation import learned, measure  # noqa: E402

TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16,
                                             "head_width": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """Random-weight backbones saved as a user's downloaded weights would be."""
    import open_clip
    from safetensors.torch import save_file
    from torchvision.models import alexnet
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    config = root / "tiny-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config)
    model = open_clip.create_model("tiny-clip")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, root / "clip.safetensors")
    dino = root / "dino"
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                             image_size=56, patch_size=14)).save_pretrained(dino)
    BitImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}).save_pretrained(dino)
    features = {f"features.{k}": v for k, v in alexnet(weights=None).features.state_dict().items()}
    torch.save(features, root / "alexnet.pth")
    return {"clip": root / "clip.safetensors", "clip_arch": config, "dino": dino, "lpips": root / "alexnet.pth"}


def _images(n: int, seed: int = 0, size: int = 64) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def test_clip_score_is_the_reference_computation(weights):
    clip = learned.Clip(weights["clip"], str(weights["clip_arch"]))
    images, prompts = _images(3), ["a red coat", "a blue dress", "a tall model on a lake"]
    got = learned.clip_score(clip.images(images), clip.texts(prompts))
    with torch.no_grad():  # by hand: preprocess, encode, cosine, x100, floored at 0
        img = clip.model.encode_image(torch.stack([clip.preprocess(i) for i in images]))
        txt = clip.model.encode_text(clip.tokenizer(prompts))
        cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    assert got == pytest.approx((100 * cos.clamp(min=0)).numpy(), abs=1e-4)
    assert got.shape == (3,) and (got >= 0).all() and (got <= 100).all()


def _reference_kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel k(a, b) = (a.b / d + 1)^3 (Binkowski et al. 2018)."""
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    off = lambda a: (a.sum() - np.trace(a)) / (m * (m - 1))  # noqa: E731
    return float(off(kxx) + off(kyy) - 2 * kxy.mean())


def test_kid_is_the_reference_computation():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(8, 16)), rng.normal(0.5, 1.0, size=(8, 16))
    got = learned.kid(torch.tensor(fake, dtype=torch.float64), torch.tensor(real, dtype=torch.float64))
    assert got == pytest.approx(_reference_kid(fake, real), rel=1e-6)
    far = learned.kid(torch.tensor(rng.normal(3.0, 1.0, size=(8, 16))), torch.tensor(real))
    assert far > got  # further from the training features, larger KID


def test_lpips_is_zero_for_identical_images_and_positive_otherwise(weights):
    lp = learned.Lpips(weights["lpips"])
    a, b = _images(2, seed=3)
    assert lp.distance(a, a) == pytest.approx(0, abs=1e-6) and lp.distance(a, b) > 0
    assert learned.mean_pairwise([a, a, a], lp.distance) == pytest.approx(0, abs=1e-6)


def test_every_learned_metric_fills_the_grid(weights, tmp_path):
    gen, train = tmp_path / "gen", tmp_path / "train"
    gen.mkdir(), train.mkdir()
    entries = []
    for k, img in enumerate(_images(4, seed=5)):
        img.save(gen / f"{k}.png")
        entries.append({"file": f"{k}.png", "source": "final", "prompt_id": "P00", "prompt": "a coat",
                        "sampler": "euler", "steps": 20, "cfg": 7, "negative": "on", "weight": 1.0, "seed": k})
    for k, img in enumerate(_images(3, seed=6)):
        img.save(train / f"{k}.png")
        (train / f"{k}.txt").write_text("a coat")
    (gen / "index.json").write_text(json.dumps({"images": entries}))
    step = learned.learned_metrics({k: str(v) for k, v in weights.items()})
    measured, _ = measure.measure_folder(gen, "generation grid", measure.generation_items(gen), against=train,
                                         workers=1, learned=step)
    for name in ("clip_score", "clip_train_similarity", "dino_train_similarity", "kid", "lpips_diversity"):
        assert name in measured.frame.columns and measured.frame[name].notna().all(), name
    assert measured.skipped == {}
    none = learned.learned_metrics({})(measure.generation_items(gen), measured.frame.copy(), train)
    assert set(none) == {"clip_score", "clip_train_similarity", "dino_train_similarity", "kid", "lpips_diversity"}
