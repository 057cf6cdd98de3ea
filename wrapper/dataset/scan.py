"""Find the images and captions of a dataset folder, and read captions the way sd-scripts does."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from wrapper.dataset.images import IMAGE_SUFFIXES, OTHER_IMAGE_SUFFIXES
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
    unsupported: tuple[str, ...] = ()  # images in formats sd-scripts does not train on (.gif, .tiff...)
    special: tuple[str, ...] = ()  # "name (named pipe)": not regular files, never opened
    bad_names: tuple[str, ...] = ()  # names that are not UTF-8, shown with \x escapes (folders end in /)

    def notes(self) -> list[str]:
        """Warnings about files that are not trained on, shared by prep and audit."""
        notes = []
        if self.unsupported:
            found = sorted({Path(f).suffix.lower() for f in self.unsupported})
            notes.append(
                f"{len(self.unsupported)} image(s) in a format sd-scripts does not train on ({', '.join(found)}; "
                f"it trains on {', '.join(IMAGE_SUFFIXES)}), skipped with their captions: "
                + ", ".join(self.unsupported)
            )
        if self.special:
            notes.append(f"{len(self.special)} item(s) that are not regular files, skipped: {', '.join(self.special)}")
        return notes


def scan(root: Path, caption_extension: str = ".txt") -> Folder:
    """List images (any case of a known suffix, in nested folders too) and their captions.

    Pipes, sockets and devices are set aside unopened (reading a pipe blocks forever); symlinks
    to files are followed. Names that are not UTF-8 are set aside too: no manifest or report can
    hold them.
    """
    root = Path(root)
    try:
        is_dir = stat.S_ISDIR(os.stat(root).st_mode)
    except FileNotFoundError:
        raise DatasetError(f"{root}: does not exist") from None
    except OSError as exc:
        raise DatasetError(f"{root}: cannot open: {exc.strerror or exc}") from exc
    if not is_dir:
        raise DatasetError(f"{root}: not a folder")
    items: list[Item] = []
    orphans: list[str] = []
    ignored: list[str] = []
    near: dict[str, str] = {}
    unsupported, special, bad_names = [], [], []
    for folder, dirs, files in os.walk(root, onerror=_raise):
        rel = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for d in [d for d in dirs if not _utf8(d)]:
            bad_names.append(shown(rel / d) + "/")
            dirs.remove(d)
        names = []
        for f in sorted(files):
            if f.startswith(".") or (rel == Path() and f == MANIFEST):
                continue
            if not _utf8(f):
                bad_names.append(shown(rel / f))
            elif kind := _special(Path(folder) / f):
                special.append(f"{(rel / f).as_posix()} ({kind})")
            else:
                names.append(f)
        stems = {Path(f).stem for f in names if Path(f).suffix.lower() in IMAGE_SUFFIXES + OTHER_IMAGE_SUFFIXES}
        lower = {f.lower(): f for f in names}
        for name in names:
            path = (rel / name).as_posix()
            stem, suffix = Path(name).stem, Path(name).suffix
            if suffix.lower() in IMAGE_SUFFIXES:
                caption = stem + caption_extension
                items.append(Item(path, (rel / caption).as_posix() if caption in names else None))
                if caption not in names and caption.lower() in lower:
                    near[path] = (rel / lower[caption.lower()]).as_posix()
            elif suffix.lower() in OTHER_IMAGE_SUFFIXES:
                unsupported.append(path)
            elif name.endswith(caption_extension):
                if name[: -len(caption_extension)] not in stems:
                    orphans.append(path)
            else:
                ignored.append(path)
    return Folder(
        root, tuple(items), tuple(orphans), tuple(ignored), near, tuple(unsupported), tuple(special), tuple(bad_names)
    )


def caption_extension_problem(extension: str) -> str | None:
    if not re.fullmatch(r"\.[\w.-]+", extension):
        return f"caption extension {extension!r} should look like '.txt'"
    return None


def shown(path: str | os.PathLike) -> str:
    """A path as text that can be printed and written as UTF-8: undecodable bytes become \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_regular(path: Path) -> bool:
    """True for a regular file (or a link to one); False for pipes, devices, folders and errors."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")  # os.walk decodes undecodable bytes to lone surrogates, which fail here
    except UnicodeEncodeError:
        return False
    return True


def _special(path: Path) -> str | None:
    """What a directory entry is when it is not a regular file; None for files and unreadable entries
    (a dangling link is reported as unreadable when it is read)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "not a regular file"


def image_folders(root: Path) -> tuple[Path, ...]:
    """Sub-folders of `root` that hold images (`10_dress/`...): each becomes one more dataset subset."""
    return tuple(sorted({(root / item.image).parent for item in scan(root).items} - {root}))


def _raise(error: OSError) -> None:
    raise DatasetError(f"{shown(error.filename)}: cannot list folder: {error.strerror}")


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
