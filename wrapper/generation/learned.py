"""Image metrics that need model weights the user supplies: CLIP score and similarity, DINO similarity,
KID, LPIPS diversity (the `metrics` extra: open_clip, transformers, torchmetrics, lpips).

Weights are read from local files or folders named in gaze.toml's [metrics] table, never downloaded:

    [metrics]
    clip = "~/weights/open_clip_vit_b32.safetensors"   # an open_clip checkpoint file
    clip_arch = "ViT-B-32"                              # its open_clip architecture, or a model-config .json
    dino = "~/weights/dinov2-small"                    # a Hugging Face DINOv2 folder (config + weights)
    lpips = "~/weights/alexnet.pth"                     # torchvision AlexNet weights (LPIPS' own layers ship with it)

A metric whose weights are not named is skipped with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wrapper.errors import GazeError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from wrapper.generation.measure import Item

KEYS = ("clip", "clip_arch", "dino", "lpips")
EXTRA = "install the metrics extra (pip install -e '.[metrics]')"
KID_SUBSETS = 50  # random subsets torchmetrics averages KID over (each at most the smaller set's size)


def check_config(config: Mapping[str, Any], where: str) -> list[str]:
    """Problems with a [metrics] table: unknown keys, weights that are not there."""
    problems = [f"{where}: [metrics] {k}: unknown key (expected one of {', '.join(KEYS)})" for k in config
                if k not in KEYS]
    for key in ("clip", "dino", "lpips"):
        if key in config and not Path(config[key]).expanduser().exists():
            problems.append(f"{where}: [metrics] {key} = {str(config[key])!r} does not exist")
    return problems


def _require(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise GazeError(f"{module} is not installed: {EXTRA}")


def load_images(paths: Sequence[Path]) -> list[Any]:
    from PIL import Image

    from wrapper.dataset.images import to_rgb

    images = []
    for path in paths:
        with Image.open(path) as img:
            img.load()
            images.append(to_rgb(img))
    return images


# ---- CLIP (open_clip) --------------------------------------------------------------------------


class Clip:
    """An open_clip model from a local checkpoint: normalised image and text embeddings."""

    def __init__(self, weights: Path, arch: str) -> None:
        _require("open_clip")
        import open_clip

        if arch.endswith(".json"):  # a model config of the user's own
            open_clip.add_model_config(Path(arch).expanduser())
            arch = Path(arch).stem
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=str(Path(weights).expanduser()), load_weights=True)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(arch)

    def images(self, images: Sequence[Any]) -> torch.Tensor:
        import torch

        with torch.no_grad():
            batch = torch.stack([self.preprocess(img) for img in images])
            return torch.nn.functional.normalize(self.model.encode_image(batch).float(), dim=-1)

    def texts(self, texts: Sequence[str]) -> torch.Tensor:
        import torch

        with torch.no_grad():  # CLIP reads 77 tokens: a longer prompt is judged on its beginning
            return torch.nn.functional.normalize(self.model.encode_text(self.tokenizer(list(texts))).float(), dim=-1)


def clip_score(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> np.ndarray:
    """100 x max(cosine, 0) of each image with its own prompt (torchmetrics' CLIPScore definition)."""
    return (100 * (image_embeddings * text_embeddings).sum(-1).clamp(min=0)).numpy()


def centroid_similarity(embeddings: torch.Tensor, references: torch.Tensor) -> np.ndarray:
    """Cosine of each embedding with the mean direction of the reference (training) embeddings."""
    import torch

    centre = torch.nn.functional.normalize(references.mean(0, keepdim=True), dim=-1)
    return (embeddings @ centre.T).squeeze(-1).numpy()


# ---- DINO (transformers) and KID (torchmetrics) -------------------------------------------------


class Dino:
    """A DINOv2 model from a local folder: normalised CLS embeddings."""

    def __init__(self, folder: Path) -> None:
        _require("transformers")
        from transformers import AutoImageProcessor, AutoModel

        folder = Path(folder).expanduser()
        self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).eval()

    def features(self, images: Sequence[Any]) -> torch.Tensor:
        import torch

        with torch.no_grad():
            inputs = self.processor(images=list(images), return_tensors="pt")
            return self.model(**inputs).last_hidden_state[:, 0].float()

    def images(self, images: Sequence[Any]) -> torch.Tensor:
        import torch

        return torch.nn.functional.normalize(self.features(images), dim=-1)


def kid(generated: torch.Tensor, real: torch.Tensor, *, seed: int = 0) -> float:
    """Kernel inception distance (unbiased MMD^2, cubic polynomial kernel) between two feature sets,
    averaged over random subsets as torchmetrics does, on the features given (DINO's here)."""
    _require("torchmetrics")
    import torch
    from torchmetrics.image.kid import KernelInceptionDistance

    n = min(len(generated), len(real))
    if n < 2:
        raise GazeError("KID needs at least two generated and two training images")
    torch.manual_seed(seed)
    # the features are computed already (DINO): the extractor passes them through
    metric = KernelInceptionDistance(feature=torch.nn.Identity(), subset_size=n, subsets=KID_SUBSETS)
    metric.update(real, real=True)
    metric.update(generated, real=False)
    mean, _ = metric.compute()
    return float(mean)


# ---- LPIPS ----------------------------------------------------------------------------------------


class Lpips:
    """LPIPS with its own linear layers (shipped with the lpips package) on an AlexNet whose weights
    the user supplies (torchvision's `features.*` tensors)."""

    def __init__(self, alexnet_weights: Path) -> None:
        _require("lpips")
        import lpips
        import torch

        self.model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
        state = torch.load(Path(alexnet_weights).expanduser(), map_location="cpu", weights_only=True)
        slices = [getattr(self.model.net, f"slice{i}") for i in range(1, 6)]
        for key, value in state.items():
            if not key.startswith("features."):
                continue
            index, name = key.removeprefix("features.").split(".")
            owner = next(s for s in slices if index in s._modules)
            getattr(owner._modules[index], name).data.copy_(value)

    def distance(self, a: Any, b: Any) -> float:
        import numpy as np
        import torch

        def tensor(img: Any) -> torch.Tensor:
            array = np.asarray(img.resize((256, 256)), np.float32) / 127.5 - 1
            return torch.from_numpy(array).permute(2, 0, 1)[None]

        with torch.no_grad():
            return float(self.model(tensor(a), tensor(b)).item())


def mean_pairwise(images: Sequence[Any], distance: Callable[[Any, Any], float]) -> float | None:
    pairs = [(i, j) for i in range(len(images)) for j in range(i + 1, len(images))]
    return sum(distance(images[i], images[j]) for i, j in pairs) / len(pairs) if pairs else None


# ---- all of them over one measured grid -----------------------------------------------------------


def learned_metrics(config: Mapping[str, Any] | None
                    ) -> Callable[[Sequence[Item], pd.DataFrame, Path | None], dict[str, str]]:
    """A step for wrapper.generation.measure.measure: adds every metric whose weights are named
    (columns of the frame) and returns {metric: why it was skipped} for the others."""
    config = dict(config or {})

    def step(items: Sequence[Item], frame: pd.DataFrame, against: Path | None) -> dict[str, str]:
        skipped: dict[str, str] = {}
        if not len(frame):
            return skipped
        paths = [Path(f) for f in frame["file"]]
        images = load_images(paths)
        training = _training_images(against)
        prompts = [next(i.prompt for i in items if i.path == p) for p in paths]
        if config.get("clip"):
            clip = Clip(Path(config["clip"]), str(config.get("clip_arch", "ViT-B-32")))
            embedded = clip.images(images)
            frame["clip_score"] = clip_score(embedded, clip.texts(prompts))
            if training:
                frame["clip_train_similarity"] = centroid_similarity(embedded, clip.images(training))
            else:
                skipped["clip_train_similarity"] = "no training images (pass --against DATASET)"
        else:
            skipped["clip_score"] = skipped["clip_train_similarity"] = "no CLIP weights ([metrics] clip in gaze.toml)"
        if config.get("dino"):
            dino = Dino(Path(config["dino"]))
            features = dino.features(images)
            if training:
                reference = dino.features(training)
                frame["dino_train_similarity"] = centroid_similarity(
                    _normalise(features), _normalise(reference))
                frame["kid"] = _per_group(frame, "source", lambda rows: kid(features[rows], reference))
            else:
                skipped["dino_train_similarity"] = skipped["kid"] = "no training images (pass --against DATASET)"
        else:
            skipped["dino_train_similarity"] = skipped["kid"] = "no DINO weights ([metrics] dino in gaze.toml)"
        if config.get("lpips"):
            lp = Lpips(Path(config["lpips"]))
            cells = [k for k in ("source", "prompt_id", "sampler", "steps", "cfg", "negative", "weight")
                     if k in frame.columns]
            frame["lpips_diversity"] = _per_group(
                frame, cells, lambda rows: mean_pairwise([images[i] for i in rows], lp.distance))
        else:
            skipped["lpips_diversity"] = "no LPIPS backbone weights ([metrics] lpips in gaze.toml)"
        return skipped

    return step


def _normalise(x: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.nn.functional.normalize(x, dim=-1)


def _training_images(folder: Path | None) -> list[Any]:
    if folder is None:
        return []
    from wrapper.dataset.scan import scan

    found = scan(Path(folder))
    return load_images([found.root / item.image for item in found.items])


def _per_group(frame: pd.DataFrame, by: str | Sequence[str], fn: Callable[[list[int]], float | None]) -> list:
    """fn over the row positions of each group, given to every row of the group."""
    by = [by] if isinstance(by, str) else list(by)
    if not by or not all(k in frame.columns for k in by):
        return [fn(list(range(len(frame))))] * len(frame)
    values = [None] * len(frame)
    positions = frame.reset_index(drop=True)
    for _, group in positions.groupby(by, dropna=False, sort=False):
        rows = list(group.index)
        value = fn(rows)
        for row in rows:
            values[row] = value
    return values
