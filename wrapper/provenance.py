"""What a run was made with: software versions, the sd-scripts commit, and the exact data."""

from __future__ import annotations

import hashlib
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "gaze",
    "torch",
    "torchvision",
    "xformers",
    "accelerate",
    "transformers",
    "diffusers",
    "safetensors",
    "huggingface-hub",
    "toml",
    "voluptuous",
    "bitsandbytes",
    "tensorboard",
    "numpy",
    "pillow",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(checkout: Path) -> str | None:
    """The checkout's HEAD commit, read from .git without running git (None if not a git checkout)."""
    git = checkout / ".git"
    if git.is_file():  # a worktree: "gitdir: <path>"
        git = (checkout / git.read_text().split(":", 1)[1].strip()).resolve()
    head = git / "HEAD"
    if not head.is_file():
        return None
    ref = head.read_text().strip()
    if not ref.startswith("ref:"):
        return ref
    name = ref.split(" ", 1)[1]
    loose = git / name
    if loose.is_file():
        return loose.read_text().strip()
    packed = git / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            if line.endswith(" " + name):
                return line.split(" ", 1)[0]
    return None


def environment(checkout: Path, device: dict[str, Any]) -> dict[str, Any]:
    """Everything that could explain why two runs of one recipe differ."""
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": package_versions(),
        "device": device,
        "sd_scripts": {"path": str(checkout), "commit": git_commit(checkout)},
    }


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_manifest(folder: Path, caption_extension: str = ".txt") -> dict[str, Any]:
    """Every image and caption sd-scripts will read from the image folder, with its size and sha256."""
    from wrapper.images import IMAGE_SUFFIXES

    wanted = {*IMAGE_SUFFIXES, caption_extension}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in wanted)
    return {
        "folder": str(folder),
        "files": [{"name": str(p.relative_to(folder)), "bytes": p.stat().st_size, "sha256": sha256(p)}
                  for p in files],
    }
