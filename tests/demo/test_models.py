"""Offline demo assets: tokenizer layout, random-weight models, the synthetic dataset.

The fast tests build tiny models from the same code path; the `sd_scripts` tests build the
full-size ones (reused from $GAZE_TEST_CACHE) and train them with the real sd-scripts.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from wrapper.demo import assets as demo_assets
from wrapper.demo import cache, models, photos, tokenizers
from wrapper.errors import DatasetError, GazeError

TINY_TEXT = {
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "hidden_act": "quick_gelu", "projection_dim": 32, "vocab_size": 1000, "max_position_embeddings": 77,
    "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}  # fmt: skip
TINY_VAE = {
    "sample_size": 32, "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
    "norm_num_groups": 32, "block_out_channels": [32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
}  # fmt: skip
SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1}


def tiny_specs(folder: Path) -> Path:
    """Write tiny sd15/sdxl architectures in the format of wrapper/data/synth-<family>.json."""
    unet = {
        "sample_size": 8, "layers_per_block": 1, "block_out_channels": [32, 64], "norm_num_groups": 32,
        "attention_head_dim": 4, "cross_attention_dim": 32,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    }  # fmt: skip
    xl_unet = dict(
        unet, cross_attention_dim=64, use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
    )  # fmt: skip
    sd15 = json.loads((models.SPEC_DIR / "synth-sd15.json").read_text())
    sd15["components"] = {
        "unet": ["diffusers", "UNet2DConditionModel", unet],
        "vae": ["diffusers", "AutoencoderKL", TINY_VAE],
        "text_encoder": ["transformers", "CLIPTextModel", TINY_TEXT],
        "scheduler": ["diffusers", "PNDMScheduler", dict(SCHEDULER, skip_prk_steps=True)],
    }
    sdxl = json.loads((models.SPEC_DIR / "synth-sdxl.json").read_text())
    sdxl["components"] = {
        "unet": ["diffusers", "UNet2DConditionModel", xl_unet],
        "vae": ["diffusers", "AutoencoderKL", TINY_VAE],
        "text_encoder": ["transformers", "CLIPTextModel", TINY_TEXT],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection", dict(TINY_TEXT, hidden_act="gelu")],
        "scheduler": ["diffusers", "EulerDiscreteScheduler", SCHEDULER],
    }
    folder.mkdir(parents=True, exist_ok=True)
    for family, spec in (("sd15", sd15), ("sdxl", sdxl)):
        (folder / f"synth-{family}.json").write_text(json.dumps(spec))
    return folder


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "SPEC_DIR", tiny_specs(tmp_path / "specs"))


def safetensors_header(path: Path) -> dict:
    with open(path, "rb") as f:
        return json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))


def param_count(path: Path) -> int:
    header = safetensors_header(path)
    header.pop("__metadata__", None)
    return sum(math.prod(v["shape"]) for v in header.values())


# --- tokenizer ---------------------------------------------------------------------------------


def test_byte_alphabet_covers_every_byte_once():
    from wrapper.dataset.tokens import byte_alphabet

    table = byte_alphabet()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert all(not c.isspace() for c in table.values())
    assert list(table.values())[0] == "!"  # CLIP's id 0, the pad sd-scripts uses for SDXL's bigG tokenizer


def test_merges_are_deterministic_and_make_new_tokens():
    merges = tokenizers.learn_merges(tokenizers._corpus())
    assert merges == tokenizers.learn_merges(tokenizers._corpus())
    assert len(merges) == tokenizers.N_MERGES
    joined = ["".join(m) for m in merges]
    assert len(set(joined)) == len(joined)
    vocab = tokenizers.clip_vocab(merges)
    assert len(vocab) == 512 + len(merges) + 2
    assert vocab["!"] == 0 and vocab["!</w>"] == 256
    assert (vocab[tokenizers.BOS], vocab[tokenizers.EOS]) == (len(vocab) - 2, len(vocab) - 1)


def test_tokenizers_load_with_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    cache = tokenizers.build_tokenizers(tmp_path / "tok")
    assert sorted(p.name for p in cache.iterdir()) == sorted([tokenizers.TOKENIZER_G, tokenizers.TOKENIZER_L])
    for name, pad in ((tokenizers.TOKENIZER_L, "eos"), (tokenizers.TOKENIZER_G, 0)):
        tok = transformers.CLIPTokenizer.from_pretrained(cache / name)
        assert len(tok) == 704 and tok.model_max_length == 77
        assert (tok.bos_token_id, tok.eos_token_id) == (702, 703)
        assert tok.pad_token_id == (tok.eos_token_id if pad == "eos" else 0)
        ids = tok("A Camel Wool trench coat, studio lighting", padding="max_length", max_length=77).input_ids
        assert len(ids) == 77 and ids[0] == tok.bos_token_id
        assert max(ids) == tok.eos_token_id  # argmax pooling finds EOS
        assert ids.index(max(ids)) == ids.index(tok.eos_token_id)
        assert tok.unk_token_id not in ids[1 : ids.index(tok.eos_token_id)]
        assert tok.decode(ids, skip_special_tokens=True) == "a camel wool trench coat , studio lighting"


def test_build_tokenizers_is_idempotent_and_deterministic(tmp_path):
    first = tokenizers.build_tokenizers(tmp_path / "a")
    vocab = first / tokenizers.TOKENIZER_L / "vocab.json"
    stamp = vocab.stat().st_mtime_ns
    tokenizers.build_tokenizers(first)
    assert vocab.stat().st_mtime_ns == stamp
    second = tokenizers.build_tokenizers(tmp_path / "b")
    for name in (tokenizers.TOKENIZER_L, tokenizers.TOKENIZER_G):
        for f in ("vocab.json", "merges.txt", "tokenizer_config.json"):
            assert (first / name / f).read_bytes() == (second / name / f).read_bytes()


def test_build_tokenizers_refuses_a_foreign_folder(tmp_path):
    foreign = tmp_path / tokenizers.TOKENIZER_L
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(GazeError, match="refusing to overwrite"):
        tokenizers.build_tokenizers(tmp_path)
    assert (foreign / "notes.txt").read_text() == "mine"


# --- random weights ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape", "rule"),
    [
        ("down.0.norm1.bias", (320,), ("zeros", 0.0)),
        ("final_layer_norm.weight", (768,), ("ones", 1.0)),
        ("embeddings.token_embedding.weight", (49408, 768), ("normal", 0.02)),
        ("conv_in.weight", (320, 4, 3, 3), ("uniform", 1 / 6)),
        ("to_q.weight", (320, 64), ("uniform", 1 / 8)),
    ],
)
def test_init_rule(name, shape, rule):
    assert models.init_rule(name, shape) == pytest.approx(rule)


def test_random_safetensors_stream_is_valid_and_deterministic(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors import safe_open

    shapes = {"b.weight": (8, 3, 3, 3), "a.bias": (8,), "n.weight": (5,), "e.token_embedding.weight": (10, 4)}
    for dtype in ("float16", "bfloat16", "float32"):
        one = models.write_random_safetensors(tmp_path / f"1{dtype}", shapes, seed=3, dtype=dtype)
        two = models.write_random_safetensors(tmp_path / f"2{dtype}", shapes, seed=3, dtype=dtype)
        assert one.read_bytes() == two.read_bytes()
        with safe_open(one, "pt") as f:
            assert f.metadata() == {"format": "pt"}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        assert {k: tuple(t.shape) for k, t in tensors.items()} == shapes
        assert all(t.dtype == getattr(torch, dtype) for t in tensors.values())
        assert tensors["a.bias"].eq(0).all() and tensors["n.weight"].eq(1).all()
        assert 0 < tensors["b.weight"].abs().max() <= 1 / math.sqrt(27) + 1e-3
    other = models.write_random_safetensors(tmp_path / "other", shapes, seed=4, dtype="float32")
    assert other.read_bytes() != (tmp_path / "1float32").read_bytes()


# --- tiny models through the same code path ----------------------------------------------------


def test_tiny_sd15_loads_and_generates_with_diffusers(tiny, tmp_path):
    diffusers = pytest.importorskip("diffusers")
    dest = models.build_sd15(tmp_path / "sd15")
    assert json.loads((dest / cache.MARKER).read_text())["dtype"] == "float32"
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(dest)
    assert pipe.tokenizer.eos_token_id == 703
    image = pipe("a coat", num_inference_steps=1, height=16, width=16, output_type="np").images[0]
    assert image.shape == (16, 16, 3)


def test_tiny_sdxl_loads_and_generates_with_diffusers(tiny, tmp_path):
    diffusers = pytest.importorskip("diffusers")
    dest = models.build_sdxl(tmp_path / "sdxl")
    assert (
        safetensors_header(dest / "unet" / "diffusion_pytorch_model.safetensors")["conv_in.weight"]["dtype"] == "BF16"
    )
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(dest)
    assert pipe.tokenizer_2.pad_token_id == 0
    image = pipe("a coat", num_inference_steps=1, height=16, width=16, output_type="np").images[0]
    assert image.shape == (16, 16, 3)


def test_build_model_is_idempotent_and_rebuilds_on_new_parameters(tiny, tmp_path):
    pytest.importorskip("diffusers")
    weights = models.build_sd15(tmp_path / "m") / "unet" / "diffusion_pytorch_model.safetensors"
    first, stamp = weights.read_bytes(), weights.stat().st_mtime_ns
    models.build_sd15(tmp_path / "m")
    assert weights.stat().st_mtime_ns == stamp
    models.build_sd15(tmp_path / "m", seed=1)
    assert weights.read_bytes() != first
    assert json.loads((tmp_path / "m" / cache.MARKER).read_text())["seed"] == 1
    assert not list(tmp_path.glob(".m.tmp*"))


def test_build_model_refuses_a_foreign_folder(tiny, tmp_path):
    pytest.importorskip("diffusers")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.ckpt").write_text("someone's model")
    with pytest.raises(GazeError, match="refusing to overwrite"):
        models.build_sd15(tmp_path / "m")
    assert (tmp_path / "m" / "model.ckpt").read_text() == "someone's model"


def test_failed_build_leaves_nothing_behind(tiny, tmp_path, monkeypatch):
    pytest.importorskip("diffusers")

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(models, "write_random_safetensors", fail)
    with pytest.raises(RuntimeError):
        models.build_sd15(tmp_path / "m")
    assert list(tmp_path.iterdir()) == [tmp_path / "specs"]


def test_ensure_demo_assets_builds_once(tiny, tmp_path):
    pytest.importorskip("diffusers")
    lines: list[str] = []
    assets = demo_assets.ensure_demo_assets(tmp_path / "cache", "sdxl", log=lines.append)
    assert assets == demo_assets.DemoAssets(
        tmp_path / "cache" / "tokenizers",
        tmp_path / "cache" / "models" / "sdxl-random",
        tmp_path / "cache" / "datasets" / "synth-fashion",
    )
    assert (assets.tokenizer_cache_dir / tokenizers.TOKENIZER_G / "vocab.json").is_file()
    assert (assets.model_path / "text_encoder_2" / "model.safetensors").is_file()
    assert len(list(assets.dataset_dir.glob("*.png"))) == 8
    assert any("building" in line for line in lines)
    again: list[str] = []
    assert demo_assets.ensure_demo_assets(tmp_path / "cache", "sdxl", log=again.append) == assets
    assert not any("building" in line for line in again) and len(again) == 3


def test_ensure_demo_assets_rejects_unknown_family(tmp_path):
    with pytest.raises(GazeError, match="sd15, sdxl"):
        demo_assets.ensure_demo_assets(tmp_path, "sd21", log=lambda _: None)
    assert not tmp_path.joinpath("tokenizers").exists()


# --- dataset -----------------------------------------------------------------------------------


def test_dataset_images_and_captions(tmp_path):
    from PIL import Image

    dest = photos.synth_dataset(tmp_path / "data", n=6)
    pngs = sorted(dest.glob("*.png"))
    assert [p.stem for p in pngs] == [f"{i:03d}" for i in range(6)]
    sizes = [Image.open(p).size for p in pngs]
    assert sizes == [(512, 768), (768, 512)] * 3
    for p in pngs:
        with Image.open(p) as im:
            assert im.mode == "RGB" and len(im.getcolors(1 << 16) or range(1 << 16)) > 10  # not flat
    captions = [p.with_suffix(".txt").read_text().strip() for p in pngs]
    assert all(captions) and len(set(captions)) == len(captions)
    long = [c for c in captions if len(c.replace(",", " ,").split()) > 75]
    assert 1 <= len(long) < len(captions)  # some exceed 75 CLIP tokens whatever the vocabulary


def test_long_captions_exceed_75_tokens(tmp_path):
    transformers = pytest.importorskip("transformers")
    cache = tokenizers.build_tokenizers(tmp_path / "tok")
    tok = transformers.CLIPTokenizer.from_pretrained(cache / tokenizers.TOKENIZER_L)
    counts = [len(tok(photos.caption(i)).input_ids) - 2 for i in range(8)]
    assert [c > 75 for c in counts] == [i % 4 == 3 for i in range(8)]


def test_dataset_is_deterministic_and_idempotent(tmp_path):
    a = photos.synth_dataset(tmp_path / "a", n=3, sizes=((64, 96),))
    b = photos.synth_dataset(tmp_path / "b", n=3, sizes=((64, 96),))
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    stamp = (a / "000.png").stat().st_mtime_ns
    photos.synth_dataset(a, n=3, sizes=((64, 96),))
    assert (a / "000.png").stat().st_mtime_ns == stamp
    c = photos.synth_dataset(tmp_path / "c", n=3, seed=1, sizes=((64, 96),))
    assert (c / "000.png").read_bytes() != (a / "000.png").read_bytes()


def test_dataset_replaces_its_own_folder_when_parameters_change(tmp_path):
    dest = photos.synth_dataset(tmp_path / "d", n=4, sizes=((64, 64),))
    (dest / "000_0064x0064_sd.npz").write_bytes(b"latent cache")
    photos.synth_dataset(dest, n=2, sizes=((64, 64),))
    assert sorted(p.name for p in dest.iterdir()) == ["000.png", "000.txt", "001.png", "001.txt", cache.MARKER]


def test_dataset_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(DatasetError, match="photos.*refusing"):
        photos.synth_dataset(tmp_path / "photos")
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["holiday.jpg"]


def test_dataset_fills_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert len(list(photos.synth_dataset(tmp_path / "empty", n=2).glob("*.txt"))) == 2


def test_leftovers_of_a_killed_build_are_removed(tmp_path):
    stale = tmp_path / ".d.tmp999999999"
    stale.mkdir()
    (stale / "000.png").write_bytes(b"half written")
    photos.synth_dataset(tmp_path / "d", n=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


# --- full size, with the real sd-scripts -------------------------------------------------------

FULL_SIZE = {  # parameters per component of the released architectures
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
             "text_encoder_2": 694_659_840},
}  # fmt: skip


@pytest.fixture(scope="session")
def heavy_cache(tmp_path_factory) -> Path:
    if not os.environ.get("SD_SCRIPTS_DIR"):
        pytest.skip("set SD_SCRIPTS_DIR to a sd-scripts v0.10.1 checkout to build and train full-size models")
    configured = os.environ.get("GAZE_TEST_CACHE") or os.environ.get("GAZE_CACHE_DIR")
    return Path(configured) if configured else tmp_path_factory.mktemp("gaze-cache")


def sd_scripts_env() -> dict[str, str]:
    from wrapper.kohya.checkout import trainer_env

    return trainer_env(Path(os.environ["SD_SCRIPTS_DIR"]))


def train_argv(family: str, assets: demo_assets.DemoAssets, out: Path) -> list[str]:
    dataset = out / "dataset.toml"
    dataset.write_text(
        "[general]\nresolution = 128\nenable_bucket = true\nmin_bucket_reso = 64\nmax_bucket_reso = 256\n"
        f'caption_extension = ".txt"\n[[datasets]]\n[[datasets.subsets]]\nimage_dir = "{assets.dataset_dir}"\n'
    )
    (out / "prompts.txt").write_text("a camel wool coat --w 128 --h 128 --s 2 --d 1\n")
    precision = "bf16" if family == "sdxl" else "no"
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--num_cpu_threads_per_process", "2",
            "--num_processes", "1", "--num_machines", "1", "--mixed_precision", precision,
            "--dynamo_backend", "no", "sdxl_train_network.py" if family == "sdxl" else "train_network.py",
            "--pretrained_model_name_or_path", str(assets.model_path),
            "--tokenizer_cache_dir", str(assets.tokenizer_cache_dir), "--dataset_config", str(dataset),
            "--output_dir", str(out), "--output_name", "smoke", "--network_module", "networks.lora",
            "--network_dim", "4", "--max_train_steps", "1", "--learning_rate", "1e-4", "--sdpa", "--seed", "1",
            "--max_data_loader_n_workers", "0", "--logging_dir", str(out / "logs"),
            "--sample_prompts", str(out / "prompts.txt"), "--sample_every_n_steps", "1",
            "--sample_sampler", "euler", "--mixed_precision", precision]  # fmt: skip
    if family == "sdxl":
        argv += ["--full_bf16", "--network_train_unet_only", "--cache_text_encoder_outputs",
                 "--cache_latents", "--gradient_checkpointing", "--no_half_vae"]  # fmt: skip
    return argv


@pytest.fixture(scope="session")
def trained(heavy_cache, tmp_path_factory):
    """Train each family once for one step; return (assets, output folder, completed process)."""
    runs: dict[str, tuple] = {}

    def run(family: str) -> tuple[demo_assets.DemoAssets, Path, subprocess.CompletedProcess]:
        if family not in runs:
            assets = demo_assets.ensure_demo_assets(heavy_cache, family)
            out = tmp_path_factory.mktemp(f"train-{family}")
            done = subprocess.run(train_argv(family, assets, out), cwd=os.environ["SD_SCRIPTS_DIR"],
                                  env=sd_scripts_env(), capture_output=True, text=True, timeout=900)  # fmt: skip
            runs[family] = assets, out, done
        return runs[family]

    return run


@pytest.mark.sd_scripts
@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_full_size_model_trains_with_sd_scripts(family, trained):
    if not os.environ.get("SD_SCRIPTS_DIR"):
        pytest.skip("needs SD_SCRIPTS_DIR")
    pytest.importorskip("diffusers")
    assets, out, done = trained(family)
    for name, count in FULL_SIZE[family].items():
        weights = next((assets.model_path / name).glob("*.safetensors"))
        assert param_count(weights) == count, name
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (out / "smoke.safetensors").stat().st_size > 1_000_000
    assert list((out / "sample").glob("smoke_000001_00_*.png"))
    assert "avr_loss=nan" not in done.stderr


@pytest.mark.sd_scripts
@pytest.mark.slow
def test_gen_img_loads_full_size_sd15_with_a_lora(trained, tmp_path):
    if not os.environ.get("SD_SCRIPTS_DIR"):
        pytest.skip("needs SD_SCRIPTS_DIR")
    pytest.importorskip("diffusers")
    assets, out, done = trained("sd15")
    assert done.returncode == 0
    argv = [sys.executable, "gen_img.py", "--ckpt", str(assets.model_path),
            "--tokenizer_cache_dir", str(assets.tokenizer_cache_dir), "--network_module", "networks.lora",
            "--network_weights", str(out / "smoke.safetensors"), "--outdir", str(tmp_path),
            "--prompt", "a coat", "--W", "128", "--H", "128", "--steps", "2", "--sampler", "euler",
            "--images_per_prompt", "1", "--sdpa", "--seed", "1"]  # fmt: skip
    done = subprocess.run(argv, cwd=os.environ["SD_SCRIPTS_DIR"], env=dict(sd_scripts_env(), OMP_NUM_THREADS="2"),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(list(tmp_path.glob("*.png"))) == 1
