"""Render images on every core: one task per image, results or per-file errors back.

Workers write straight into the staging folder, so only small dicts cross process borders.
"""

from __future__ import annotations

import errno
import hashlib
import struct
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from wrapper.dataset.images import Format, Geometry, encode, encode_jpeg, render
from wrapper.dataset.scan import cpu_count

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RenderTask:
    source: Path
    rel: str
    out_base: str
    staging: Path
    geometry: Geometry
    format: Format
    background: tuple[int, int, int]
    jpeg_quality: int | None


def render_task(task: RenderTask) -> dict:
    """Worker: render one image into the staging folder; a dict with the result or an error."""
    from PIL import Image

    try:
        if task.source.stat().st_size == 0:
            return {"error": f"{task.rel}: empty file (0 bytes)"}
        img, oriented, upscaled = render(task.source, task.geometry, task.background)
        if task.jpeg_quality is None:
            data, ext = encode(img, task.format)
        else:
            data, ext = encode_jpeg(img, task.jpeg_quality), ".jpg"
    except Image.UnidentifiedImageError:
        return {"error": f"{task.rel}: not an image Pillow can read"}
    except OSError as exc:
        return {"error": f"{task.rel}: truncated, corrupt or unreadable ({exc.strerror or exc})"}
    except (ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError) as exc:
        return {"error": f"{task.rel}: cannot decode ({exc})"}
    name = task.out_base + ext
    try:
        dest = task.staging / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    except OSError as exc:  # the output side: stop everything, the other images would fail too
        reason = "no space left on device" if exc.errno == errno.ENOSPC else f"cannot write ({exc.strerror or exc})"
        return {"error": f"{task.rel}: {reason}", "fatal": True}
    return {
        "file": name,
        "size": list(img.size),
        "source_size": list(oriented),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "upscaled": upscaled,
    }


def render_all(tasks: list[RenderTask], workers: int | None, progress: Progress | None) -> list[dict]:
    """Render all tasks on every core (in this process when there is one task or one worker)."""
    workers = min(workers or cpu_count(), len(tasks))
    results: list[dict | None] = [None] * len(tasks)
    if workers <= 1:
        for i, task in enumerate(tasks):
            results[i] = render_task(task)
            if progress:
                progress(i + 1, len(tasks))
            if results[i].get("fatal"):
                break
        return [r for r in results if r is not None]
    pool = ProcessPoolExecutor(workers)
    try:
        futures = {pool.submit(render_task, task): i for i, task in enumerate(tasks)}
        for done, future in enumerate(as_completed(futures), 1):
            results[futures[future]] = future.result()
            if progress:
                progress(done, len(tasks))
            if results[futures[future]].get("fatal"):
                break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [r for r in results if r is not None]
