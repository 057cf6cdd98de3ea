"""What a run was made with: software versions, the sd-scripts commit, and the exact data."""

from __future__ import annotations

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
    "wandb",
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


def dataset_manifest(folder: Path, caption_extension: str = ".txt") -> dict[str, Any]:
    """Every image and caption sd-scripts will read from the image folder, with its size and sha256."""
    from wrapper.dataset.scan import hash_files, scan

    found = scan(folder, caption_extension)
    names = sorted([i.image for i in found.items] + [i.caption for i in found.items if i.caption])
    hashes = hash_files(folder, names)
    return {
        "folder": str(folder),
        "files": [{"name": n, "bytes": (folder / n).stat().st_size, "sha256": hashes[n]} for n in names],
    }
