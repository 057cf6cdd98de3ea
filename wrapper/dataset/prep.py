"""Prepare a training folder from a source folder: crop or normalise, inject JPEG glitches.

The result lives in a cache folder named after a key: sha256 over the sources' relative
paths and contents, the operation's parameters and OP_VERSION. Preparing the same thing
again finds it and returns at once. Everything is written into a hidden staging folder next
to the target and renamed into place only when complete, so a failure (a bad image, a full
disk, Ctrl-C) leaves nothing half-written. The source is only ever read.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from wrapper.dataset.images import EXTENSION, FORMATS, IMAGE_SUFFIXES, Format, Geometry, size_problems
from wrapper.dataset.scan import (
    MANIFEST,
    Folder,
    caption_extension_problem,
    hash_files,
    is_regular,
    read_caption,
    scan,
    shown,
)
from wrapper.dataset.workers import Progress, RenderTask, holding_signals, render_all, stopping_on_signals
from wrapper.errors import DatasetError, collect
from wrapper.recipe import Prep

OP_VERSION = "gaze-prep-1"  # change whenever an operation's output changes, to invalidate caches
GEOMETRIES = ("crop-orientation", "uncropped", "stretch")
OPERATIONS = (*GEOMETRIES, "jpeg-inject")
NAME_MAX = 255  # bytes in one file name: ext4, XFS, Btrfs, ZFS and tmpfs all stop there


@dataclass(frozen=True)
class JpegInject:
    """Re-encode a seeded, fixed share of the images as low-quality JPEG."""

    fraction: float
    quality: int = 10
    seed: int = 0


@dataclass(frozen=True)
class Plan:
    """Everything that decides the prepared folder's content (all of it goes into the key)."""

    geometry: Geometry = field(default_factory=lambda: Geometry("uncropped"))
    jpeg: JpegInject | None = None
    format: Format = "webp"  # lossless; "bmp" writes fastest, "png" is the most familiar (bench/prep.md)
    background: tuple[int, int, int] = (255, 255, 255)  # what transparent pixels become
    caption_extension: str = ".txt"
    allow_empty_captions: bool = False

    @property
    def name(self) -> str:
        return self.geometry.kind + ("+jpeg-inject" if self.jpeg else "")

    def params(self) -> dict:
        """The settings as JSON values, without geometry fields the operation ignores."""
        data = json.loads(json.dumps(asdict(self)))  # tuples become lists, as in the manifest
        used = {"crop-orientation": ("portrait", "landscape", "square"), "stretch": ("size",)}
        data["geometry"] = {
            k: v for k, v in data["geometry"].items() if k in ("kind", *used.get(self.geometry.kind, ()))
        }
        return data

    def check(self) -> None:
        problems = []
        g = self.geometry
        if g.kind not in GEOMETRIES:
            problems.append(f"operation {g.kind!r} is not one of {', '.join(GEOMETRIES)}")
        sizes = {"portrait": g.portrait, "landscape": g.landscape, "square": g.square, "stretch size": g.size}
        used = {"crop-orientation": ("portrait", "landscape", "square"), "stretch": ("stretch size",)}
        for label in used.get(g.kind, ()):
            problems += size_problems(label, sizes[label])
        if g.kind == "stretch" and g.size is None:
            problems.append("stretch needs a size (stretch_to / --size WxH)")
        if self.jpeg and not 0 <= self.jpeg.fraction <= 1:
            problems.append(f"jpeg fraction {self.jpeg.fraction} is not between 0 and 1")
        if self.jpeg and not 1 <= self.jpeg.quality <= 100:
            problems.append(f"jpeg quality {self.jpeg.quality} is not between 1 and 100")
        if self.format not in FORMATS:
            problems.append(f"format {self.format!r} is not one of {', '.join(FORMATS)}")
        problems += filter(None, [caption_extension_problem(self.caption_extension)])
        if len(self.background) != 3 or not all(0 <= v <= 255 for v in self.background):
            problems.append(f"background {self.background!r} is not an RGB triple")
        collect(problems, DatasetError, "invalid preparation settings")


@dataclass(frozen=True)
class PreparedDataset:
    path: Path  # the folder to train on
    manifest: Path
    key: str
    images: int
    reused: bool  # True when an earlier identical preparation was found
    warnings: tuple[str, ...] = ()


def plan_from_prep(prep: Prep) -> Plan:
    """A Plan from a recipe's dataset-preparation settings."""
    geometry = Geometry(
        kind=prep.mode,
        portrait=prep.portrait,
        landscape=prep.landscape,
        square=prep.square,
        size=prep.stretch_to,
    )
    return Plan(
        geometry=geometry,
        jpeg=JpegInject(prep.jpeg_fraction, prep.jpeg_quality, prep.seed) if prep.jpeg_fraction > 0 else None,
        caption_extension=prep.caption_extension,
        allow_empty_captions=prep.allow_empty_captions,
    )


def prepare_for_recipe(source: Path, prep: Prep, cache_dir: Path, **options) -> PreparedDataset:
    """Prepare `source` as a recipe's Prep says: its geometric mode, then jpeg-inject if asked."""
    return prepare(source, plan_from_prep(prep), cache_dir, **options)


def select_for_jpeg(images: Sequence[str], inject: JpegInject) -> dict[str, int]:
    """Which images get re-encoded (round(fraction * n) of them, chosen by seed) -> quality."""
    count = int(inject.fraction * len(images) + 0.5)
    ranked = sorted(images, key=lambda rel: hashlib.sha256(f"{inject.seed}\0{rel}".encode()).digest())
    return {rel: inject.quality for rel in ranked[:count]}


def dataset_key(hashes: dict[str, str], plan: Plan) -> str:
    blob = json.dumps({"op": OP_VERSION, "plan": plan.params(), "files": sorted(hashes.items())})
    return hashlib.sha256(blob.encode()).hexdigest()


def prepare(
    source: Path,
    plan: Plan,
    cache_dir: Path,
    *,
    out: Path | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> PreparedDataset:
    """Prepare `source` into `out` (default: a folder under `cache_dir` named by the key).

    A stop signal (Ctrl-C, SIGTERM, SIGHUP) ends the workers, removes the staging folder and
    raises workers.Interrupted.
    """
    plan.check()
    with stopping_on_signals():
        return _prepare(Path(source), plan, Path(cache_dir), Path(out) if out else None, workers, progress)


def _prepare(
    source: Path, plan: Plan, cache_dir: Path, out: Path | None, workers: int | None, progress: Progress | None
) -> PreparedDataset:
    _check_target(out or cache_dir)  # before reading anything: a file in the way is a quick error
    folder = scan(source, plan.caption_extension)
    if not folder.items:
        raise DatasetError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}, any case)")
    captions = _check_inputs(folder, plan)
    hashes = _hash_sources(folder)
    key = dataset_key(hashes, plan)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", source.resolve().name).strip("-.") or "dataset"
    target = out or cache_dir / f"{slug}-{plan.name}-{key[:16]}"
    _check_target(target)
    if target.resolve().is_relative_to(source.resolve()):
        raise DatasetError(f"{target}: the output must not be inside the source folder {source}")
    found = _existing(target, key)
    if found:
        return found
    staging = target.parent / f".{target.name[: NAME_MAX - 20]}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir(parents=True)
        entries, warnings = _write_all(folder, plan, hashes, captions, staging, workers, progress)
        manifest = {
            "format": "gaze-prep-manifest/1",
            "key": key,
            "op_version": OP_VERSION,
            "operation": plan.name,
            "plan": plan.params(),
            "source": shown(source.resolve()),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "warnings": warnings,
            "files": entries,
        }
        (staging / MANIFEST).write_text(manifest_text(manifest), encoding="utf-8")
        _move_into_place(staging, target, key)
    except OSError as exc:
        raise DatasetError(f"{target}: cannot write the prepared dataset: {exc.strerror or exc}") from exc
    finally:
        with holding_signals():  # a signal now must not cut the removal short; it is raised after
            shutil.rmtree(staging, ignore_errors=True)
    return PreparedDataset(target, target / MANIFEST, key, len(folder.items), False, tuple(warnings))


def manifest_text(manifest: dict) -> str:
    """JSON with one line per file entry, so manifests read (and diff) well."""
    head = json.dumps({k: v for k, v in manifest.items() if k != "files"}, indent=1, ensure_ascii=False)
    files = ",\n".join("  " + json.dumps(entry, ensure_ascii=False) for entry in manifest["files"])
    return head[:-2] + ',\n "files": [\n' + files + "\n ]\n}\n"


def _check_inputs(folder: Folder, plan: Plan) -> dict[str, bytes]:
    """Caption bytes per image; raises listing every missing or unreadable caption and name clash."""
    problems, captions = [], {}
    problems += [f"{name}: the name is not valid UTF-8; rename it (e.g. with convmv)" for name in folder.bad_names]
    outputs: dict[str, str] = {}
    suffixes = [EXTENSION[plan.format], plan.caption_extension] + ([EXTENSION["jpeg"]] if plan.jpeg else [])
    for item in folder.items:
        base = item.image.rsplit(".", 1)[0]
        copy = Path(base).name + max(suffixes, key=len)
        if len(copy.encode()) > NAME_MAX:
            problems.append(
                f"{item.image}: its prepared copy {copy} would have a name of {len(copy.encode())} bytes, over "
                f"the {NAME_MAX} file systems allow; shorten it"
            )
        if base.lower() in outputs:  # lower: the output may land on a case-insensitive file system
            problems.append(f"{item.image} and {outputs[base.lower()]} would both become {base}.*")
        outputs[base.lower()] = item.image
        if item.caption is None:
            if not plan.allow_empty_captions:
                hint = folder.near_captions.get(item.image)
                problems.append(
                    f"{item.image}: no caption {Path(base).name}{plan.caption_extension}"
                    + (f" (found {hint}; the extension is case-sensitive)" if hint else "")
                )
            captions[item.image] = b""
            continue
        try:
            data = (folder.root / item.caption).read_bytes()
            read_caption(data)
        except OSError as exc:
            problems.append(f"{item.caption}: cannot read: {exc.strerror}")
        except UnicodeDecodeError as exc:
            problems.append(f"{item.caption}: not UTF-8 text (byte {exc.start}); sd-scripts would stop")
        else:
            captions[item.image] = data
    if any(": no caption " in p for p in problems):
        problems.append("add the missing captions, or allow empty captions (--allow-empty-captions)")
    collect(problems, DatasetError, f"{folder.root}: cannot prepare")
    return captions


def _hash_sources(folder: Folder) -> dict[str, str]:
    paths = [p for item in folder.items for p in (item.image, item.caption) if p]
    hashes, problems = {}, []
    for rel, digest in hash_files(folder.root, paths).items():
        if isinstance(digest, OSError):
            problems.append(f"{rel}: cannot read: {digest.strerror or digest}")
        else:
            hashes[rel] = digest
    collect(problems, DatasetError, f"{folder.root}: cannot prepare")
    return hashes


def _check_target(target: Path) -> None:
    """Refuse an output folder that cannot be one: a file in its place or above it, a name too long."""
    for path in (target, *target.parents):
        try:
            mode = os.stat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue  # not there yet (or under a file: found further up)
        except OSError as exc:
            raise DatasetError(f"{shown(target)}: cannot be the output folder: {exc.strerror or exc}") from exc
        if not stat.S_ISDIR(mode):
            raise DatasetError(f"{shown(path)}: is a file, not a folder; cannot prepare into it")
        return


def _existing(target: Path, key: str) -> PreparedDataset | None:
    """The finished preparation at `target` if its key matches; an error if it holds anything else."""
    manifest = target / MANIFEST
    if is_regular(manifest):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            files = [(f["file"], f["op"]) for f in data["files"]]
            notes = data.get("warnings", [])
            if not (isinstance(data["key"], str) and all(isinstance(t, str) for t in [n for n, _ in files] + notes)):
                raise TypeError("the key, file names or warnings are not text")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{manifest}: unreadable manifest ({exc!r}); delete {target}") from exc
        if data.get("key") == key:
            missing = [name for name, _ in files if not is_regular(target / name)]
            if missing:
                raise DatasetError(f"{target}: incomplete, {len(missing)} file(s) gone (e.g. {missing[0]}); delete it")
            images = sum(1 for _, op in files if op != "caption")
            return PreparedDataset(target, manifest, key, images, True, tuple(notes))
        raise DatasetError(
            f"{target}: holds a different preparation (key {data.get('key', '?')[:16]}); "
            "choose another output folder or delete it"
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DatasetError(f"{target}: exists and holds other files; choose an empty or new folder")
    return None


def _move_into_place(staging: Path, target: Path, key: str) -> None:
    try:
        os.replace(staging, target)  # atomic; replaces an empty folder too
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        _existing(target, key)  # another process finished first: fine if it made the same thing


def _write_all(
    folder: Folder,
    plan: Plan,
    hashes: dict[str, str],
    captions: dict[str, bytes],
    staging: Path,
    workers: int | None,
    progress: Progress | None,
) -> tuple[list[dict], list[str]]:
    images = [item.image for item in folder.items]
    chosen = select_for_jpeg(images, plan.jpeg) if plan.jpeg else {}
    tasks = [
        RenderTask(folder.root / rel, rel, rel.rsplit(".", 1)[0], staging, plan.geometry, plan.format,
              tuple(plan.background), chosen.get(rel))
        for rel in images
    ]  # fmt: skip
    results = render_all(tasks, workers, progress)
    collect([r["error"] for r in results if "error" in r], DatasetError, f"{folder.root}: cannot prepare")
    entries, empty, upscaled = [], [], []
    for item, task, result in zip(folder.items, tasks, results, strict=True):
        op = plan.geometry.kind + ("+jpeg-inject" if task.jpeg_quality is not None else "")
        entries.append(
            {
                "file": result["file"],
                "source": item.image,
                "source_sha256": hashes[item.image],
                "op": op,
                "size": result["size"],
                "source_size": result["source_size"],
                "bytes": result["bytes"],
                "sha256": result["sha256"],
                "jpeg_quality": task.jpeg_quality,
            }
        )
        if result["upscaled"]:
            upscaled.append(item.image)
        text, _ = read_caption(captions[item.image])
        if not text:
            empty.append(item.caption or item.image)
        # sd-scripts stops on a zero-byte caption file; one newline reads as an empty caption.
        data = captions[item.image] or b"\n"
        name = task.out_base + plan.caption_extension
        (staging / name).write_bytes(data)
        entries.append(
            {
                "file": name,
                "source": item.caption,
                "source_sha256": hashes.get(item.caption or ""),
                "op": "caption",
                "size": None,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "jpeg_quality": None,
            }
        )
    return entries, _warnings(folder, empty, upscaled)


def _warnings(folder: Folder, empty: list[str], upscaled: list[str]) -> list[str]:
    notes = []
    if empty:
        notes.append(f"{len(empty)} empty caption(s): {', '.join(empty)}")
    if upscaled:
        notes.append(f"{len(upscaled)} image(s) smaller than the target, upscaled: {', '.join(upscaled)}")
    if folder.orphans:
        notes.append(f"{len(folder.orphans)} caption(s) without an image, not copied: {', '.join(folder.orphans)}")
    notes += folder.notes()
    if folder.ignored:
        notes.append(f"{len(folder.ignored)} other file(s) ignored: {', '.join(folder.ignored)}")
    return notes
