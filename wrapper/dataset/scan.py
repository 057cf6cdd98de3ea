"""Find the images and captions of a dataset folder, and read captions the way sd-scripts does."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from wrapper.dataset.images import IMAGE_SUFFIXES
from wrapper.errors import DatasetError

MANIFEST = "gaze-manifest.json"


@dataclass(frozen=True)
class Item:
    image: str  # path relative to the folder, with forward slashes
    caption: str | None  # the caption file next to it, None when there is none


@dataclass(frozen=True)
class Folder:
    root: Path
    items: tuple[Item, ...]
    orphans: tuple[str, ...]  # caption files with no image
    ignored: tuple[str, ...]  # anything else (hidden files and the manifest are skipped)
    near_captions: dict[str, str]  # image -> a caption whose extension differs only in case


def scan(root: Path, caption_extension: str = ".txt") -> Folder:
    """List images (any case of a known suffix, in nested folders too) and their captions."""
    if not root.is_dir():
        raise DatasetError(f"{root}: {'not a folder' if root.exists() else 'does not exist'}")
    items: list[Item] = []
    orphans: list[str] = []
    ignored: list[str] = []
    near: dict[str, str] = {}
    for folder, dirs, files in os.walk(root, onerror=_raise):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(folder).relative_to(root)
        names = sorted(f for f in files if not f.startswith(".") and not (rel == Path() and f == MANIFEST))
        stems = {Path(f).stem for f in names if Path(f).suffix.lower() in IMAGE_SUFFIXES}
        lower = {f.lower(): f for f in names}
        for name in names:
            path = (rel / name).as_posix()
            stem, suffix = Path(name).stem, Path(name).suffix
            if suffix.lower() in IMAGE_SUFFIXES:
                caption = stem + caption_extension
                items.append(Item(path, (rel / caption).as_posix() if caption in names else None))
                if caption not in names and caption.lower() in lower:
                    near[path] = (rel / lower[caption.lower()]).as_posix()
            elif name.endswith(caption_extension):
                if name[: -len(caption_extension)] not in stems:
                    orphans.append(path)
            else:
                ignored.append(path)
    return Folder(root, tuple(items), tuple(orphans), tuple(ignored), near)


def image_folders(root: Path) -> tuple[Path, ...]:
    """Sub-folders of `root` that hold images (`10_dress/`...): each becomes one more dataset subset."""
    return tuple(sorted({(root / item.image).parent for item in scan(root).items} - {root}))


def _raise(error: OSError) -> None:
    raise DatasetError(f"{error.filename}: cannot list folder: {error.strerror}")


def read_caption(data: bytes) -> tuple[str, int]:
    """The caption sd-scripts trains on (the first line, stripped) and the number of lines.

    Raises UnicodeDecodeError like sd-scripts for files that are not UTF-8.
    """
    # Text-mode readlines(): \r\n and \r become \n, and only \n ends a line.
    lines = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return (lines[0].strip() if lines else ""), len(lines)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(root: Path, paths: Iterable[str], workers: int | None = None) -> dict[str, str | OSError]:
    """sha256 of each file (threads: hashlib releases the GIL); an OSError in place of a hash."""

    def one(rel: str) -> str | OSError:
        try:
            return sha256_file(root / rel)
        except OSError as exc:
            return exc

    paths = list(paths)
    with ThreadPoolExecutor(workers or cpu_count()) as pool:
        return dict(zip(paths, pool.map(one, paths), strict=True))


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
