"""Random-weight, full-size SD1.5 / SDXL checkpoints in Diffusers layout.

sd-scripts rebuilds its own fixed-architecture U-Net and loads the weights into it, so the models must
be full size; only the values are random. Weights are drawn tensor by tensor and streamed to disk, so
building needs little memory. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wrapper.demo.cache import fresh_folder, is_complete
from wrapper.demo.tokenizers import write_clip_tokenizer

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


def model_params(family: str, seed: int, dtype: str | None) -> dict[str, Any]:
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
    params = model_params(family, seed, dtype)
    if is_complete(dest, params):
        return dest
    import diffusers

    spec = load_spec(family)
    index: dict[str, Any] = {"_class_name": spec["pipeline"], "_diffusers_version": diffusers.__version__}
    with fresh_folder(dest, params) as tmp:
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
