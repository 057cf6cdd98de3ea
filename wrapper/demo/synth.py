"""Offline demo assets: a synthetic CLIP tokenizer, random full-size SD1.5/SDXL models, a tiny dataset.

sd-scripts rebuilds its own fixed-architecture U-Net and loads the weights into it, so the models must
be full size; only the values are random. Weights are drawn tensor by tensor and streamed to disk, so
building needs little memory. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wrapper.dataset.tokens import byte_alphabet, merge_pair
from wrapper.errors import DatasetError, GazeError
from wrapper.recipe import FAMILIES

MARKER = "synth.json"
FORMAT = 1
TOKENIZER_L = "openai_clip-vit-large-patch14"
TOKENIZER_G = "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k"
N_MERGES = 190
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

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


# --- tokenizer ---------------------------------------------------------------------------------


def _symbols(word: str) -> tuple[str, ...]:
    table = byte_alphabet()
    chars = [table[b] for b in word.encode("utf-8")]
    return (*chars[:-1], chars[-1] + "</w>")


def learn_merges(text: str, n: int = N_MERGES) -> list[tuple[str, str]]:
    """Learn up to `n` BPE merges from `text`, most frequent pair first, ties broken alphabetically."""
    words = Counter(re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", text.lower()))
    seqs = {_symbols(w): c for w, c in words.items()}
    known = set(byte_alphabet().values())
    known |= {s + "</w>" for s in known}
    merges: list[tuple[str, str]] = []
    while len(merges) < n:
        pairs: Counter[tuple[str, str]] = Counter()
        for seq, count in seqs.items():
            for pair in zip(seq, seq[1:], strict=False):
                if "".join(pair) not in known:  # one merge per token keeps ids and merges aligned
                    pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        known.add("".join(best))
        seqs = {tuple(merge_pair(seq, best)): c for seq, c in seqs.items()}
    return merges


def clip_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's id layout: 256 bytes, the same with `</w>`, the merges, then BOS and EOS as the top ids."""
    base = list(byte_alphabet().values())
    tokens = [*base, *(b + "</w>" for b in base), *("".join(m) for m in merges), BOS, EOS]
    return {tok: i for i, tok in enumerate(tokens)}


def _corpus() -> str:
    return " ".join([w for words in WORDS.values() for w in words] * 3 + [caption(i) for i in range(40)])


def write_clip_tokenizer(folder: Path, *, pad_token: str = EOS) -> Path:
    """Write a CLIPTokenizer (vocab.json, merges.txt, configs) into `folder`."""
    merges = learn_merges(_corpus())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(clip_vocab(merges), ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    config = {
        **special,
        "model_max_length": 77,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "tokenizer_class": "CLIPTokenizer",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def build_tokenizers(cache_dir: Path) -> Path:
    """Write the tokenizers sd-scripts reads with `--tokenizer_cache_dir cache_dir`; return cache_dir.

    The bigG one pads with "!" (id 0), the pad id sd-scripts forces on SDXL's second tokenizer.
    A folder that already holds a tokenizer is left alone.
    """
    cache_dir = Path(cache_dir)
    for name, pad in ((TOKENIZER_L, EOS), (TOKENIZER_G, "!")):
        dest = cache_dir / name
        if all((dest / f).is_file() for f in ("vocab.json", "merges.txt", "tokenizer_config.json")):
            continue
        with _fresh_folder(dest, {"kind": "tokenizer", "pad": pad}) as tmp:
            write_clip_tokenizer(tmp, pad_token=pad)
    return cache_dir


# --- folders -----------------------------------------------------------------------------------


def _marker(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(folder: Path, params: dict[str, Any]) -> bool:
    return _marker(folder) == {**params, "format": FORMAT}


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True
    except (ValueError, OSError):
        return False
    return True


@contextmanager
def _fresh_folder(dest: Path, params: dict[str, Any], error: type[GazeError] = GazeError) -> Iterator[Path]:
    """Yield a temporary sibling of `dest` to fill; on success write the marker and move it into place.

    Refuses a non-empty `dest` that this module did not make; replaces one it did make.
    """
    if dest.exists() and any(dest.iterdir()) and _marker(dest) is None:
        raise error(
            f"{dest} is not empty and was not made by gaze; refusing to overwrite it "
            "(choose another folder or empty it)."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.tmp*"):  # left by a killed build
        if not _alive(stale.name.rpartition(".tmp")[2]):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({**params, "format": FORMAT}, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --- random weights ----------------------------------------------------------------------------

SAFETENSORS_DTYPES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}


def init_rule(name: str, shape: tuple[int, ...]) -> tuple[str, float]:
    """How to draw one tensor: PyTorch's default layer init, CLIP's 0.02 normal for embeddings."""
    if len(shape) < 2:
        return ("zeros", 0.0) if name.endswith("bias") else ("ones", 1.0)
    if name.endswith(("token_embedding.weight", "position_embedding.weight")):
        return "normal", 0.02
    return "uniform", 1 / math.sqrt(math.prod(shape[1:]))


def random_tensor(name: str, shape: tuple[int, ...], seed: int) -> Any:
    """A float32 tensor for `name`, drawn from its own generator so each is reproducible alone."""
    import torch

    kind, scale = init_rule(name, shape)
    if kind != "uniform" and kind != "normal":
        return torch.full(shape, scale)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    t = torch.empty(shape)
    return t.normal_(0, scale, generator=gen) if kind == "normal" else t.uniform_(-scale, scale, generator=gen)


def write_random_safetensors(
    path: Path, shapes: dict[str, tuple[int, ...]], *, seed: int, dtype: str = "float16", prefix: str = ""
) -> Path:
    """Write random tensors of `shapes` as safetensors, one tensor in memory at a time."""
    import torch

    torch_dtype = getattr(torch, dtype)
    itemsize = torch.empty((), dtype=torch_dtype).element_size()
    names = sorted(shapes)
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in names:
        size = math.prod(shapes[name]) * itemsize
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[dtype],
            "shape": list(shapes[name]),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for name in names:
            t = random_tensor(prefix + name, shapes[name], seed).to(torch_dtype)
            f.write(t.reshape(-1).view(torch.uint8).numpy().data)
    return path


# --- models ------------------------------------------------------------------------------------

SPEC_DIR = Path(__file__).parent / "data"  # synth-<family>.json: the released models' configs
# The dtype sd-scripts trains each family in on CPU, so loading needs no conversion (fp16 weights
# cost SD1.5 about 14 s and 0.8 GiB more at every start of train_network.py).
DEFAULT_DTYPES = {"sd15": "float32", "sdxl": "bfloat16"}


def load_spec(family: str) -> dict[str, Any]:
    """The architecture of `family`: pipeline class, components and their configs."""
    return json.loads((SPEC_DIR / f"synth-{family}.json").read_text())


def _write_component(
    folder: Path, library: str, cls_name: str, config: dict[str, Any], *, seed: int, dtype: str
) -> int:
    """Write one component's config and random weights into `folder`; return its parameter count."""
    import torch

    folder.mkdir()
    cls = getattr(__import__(library), cls_name)
    if cls_name.endswith("Scheduler"):
        cls(**config).save_config(folder)
        return 0
    if library == "transformers":
        model_config = cls.config_class(**config, architectures=[cls_name], torch_dtype=dtype)
        with torch.device("meta"):  # shapes and names only; no memory
            model = cls(model_config)
        model_config.save_pretrained(folder)
        weights = folder / "model.safetensors"
    else:
        with torch.device("meta"):
            model = cls.from_config(config)
        model.save_config(folder)
        weights = folder / "diffusion_pytorch_model.safetensors"
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    write_random_safetensors(weights, shapes, seed=seed, dtype=dtype, prefix=f"{folder.name}/")
    return sum(math.prod(s) for s in shapes.values())


def _model_params(family: str, seed: int, dtype: str | None) -> dict[str, Any]:
    return {
        "kind": "model",
        "family": family,
        "seed": seed,
        "dtype": dtype or DEFAULT_DTYPES.get(family, "float32"),
    }


def build_model(
    dest: Path,
    family: str,
    *,
    seed: int = 0,
    dtype: str | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Build a random-weight Diffusers folder for `family` at `dest`, unless a complete one is there."""
    dest = Path(dest)
    params = _model_params(family, seed, dtype)
    if _is_complete(dest, params):
        return dest
    import diffusers

    spec = load_spec(family)
    index: dict[str, Any] = {"_class_name": spec["pipeline"], "_diffusers_version": diffusers.__version__}
    with _fresh_folder(dest, params) as tmp:
        for name, (library, cls_name, config) in spec["components"].items():
            n = _write_component(tmp / name, library, cls_name, config, seed=seed, dtype=params["dtype"])
            index[name] = [library, cls_name]
            if n:
                log(f"  {name}: {n / 1e6:.1f}M parameters")
        for name, pad in spec["tokenizers"].items():
            write_clip_tokenizer(tmp / name, pad_token=pad)
            index[name] = ["transformers", "CLIPTokenizer"]
        index.update(spec.get("index", {}))
        (tmp / "model_index.json").write_text(json.dumps(dict(sorted(index.items())), indent=2) + "\n")
    return dest


def build_sd15(dest: Path, *, seed: int = 0, **kwargs: Any) -> Path:
    """A random-weight full-size SD1.5 Diffusers folder (fp32 by default, 4.3 GB)."""
    return build_model(dest, "sd15", seed=seed, **kwargs)


def build_sdxl(dest: Path, *, seed: int = 0, **kwargs: Any) -> Path:
    """A random-weight full-size SDXL Diffusers folder (bf16 by default, 6.9 GB)."""
    return build_model(dest, "sdxl", seed=seed, **kwargs)


# --- dataset -----------------------------------------------------------------------------------


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
    if _is_complete(dest, params):
        return dest
    with _fresh_folder(dest, params, DatasetError) as tmp:
        rng = random.Random(seed)
        for i in range(n):
            _image(tuple(sizes[i % len(sizes)]), rng).save(tmp / f"{i:03d}.png")
            (tmp / f"{i:03d}.txt").write_text(caption(seed * 1000 + i) + "\n")
    return dest


# --- everything the demo needs -----------------------------------------------------------------


@dataclass(frozen=True)
class DemoAssets:
    """Paths sd-scripts needs for an offline run."""

    tokenizer_cache_dir: Path
    model_path: Path
    dataset_dir: Path


def ensure_demo_assets(cache_dir: Path, family: str, *, log: Callable[[str], None] = print) -> DemoAssets:
    """Build whatever is missing under `cache_dir` for `family` ("sd15" or "sdxl") and return the paths."""
    if family not in FAMILIES:
        raise GazeError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    cache_dir = Path(cache_dir)
    assets = DemoAssets(
        cache_dir / "tokenizers",
        cache_dir / "models" / f"{family}-random",
        cache_dir / "datasets" / "synth-fashion",
    )
    log(f"tokenizers: {assets.tokenizer_cache_dir}")
    build_tokenizers(assets.tokenizer_cache_dir)
    if not _is_complete(assets.model_path, _model_params(family, 0, None)):
        log(f"building a random-weight {family} model (about a minute): {assets.model_path}")
        start = time.monotonic()
        build_model(assets.model_path, family, log=log)
        log(f"  built in {time.monotonic() - start:.0f} s")
    log(f"model: {assets.model_path}")
    synth_dataset(assets.dataset_dir)
    log(f"dataset: {assets.dataset_dir}")
    return assets
