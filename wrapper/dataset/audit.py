"""Check a dataset folder before training: images, captions, CLIP token lengths, buckets.

`audit_dataset` never imports torch; images are decoded in threads (Pillow releases the GIL),
except files a gaze manifest vouches for (same sha256), which only have their header read.
Problems would stop or silently spoil training; warnings are worth a look.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from wrapper.dataset.images import MAX_SIDE, SD_SCRIPTS_SUFFIXES, Probe, probe, quiet_bomb_warnings, size_problems
from wrapper.dataset.scan import (
    MANIFEST,
    Folder,
    caption_extension_problem,
    cpu_count,
    is_regular,
    read_caption,
    scan,
    shown,
)
from wrapper.dataset.tokens import LIMITS, count_tokens, required_max_token_length
from wrapper.errors import DatasetError, collect, did_you_mean
from wrapper.kohya.buckets import BucketRules, adjust_limits, bucket_rules, place
from wrapper.kohya.models import CHECKPOINT_FAMILIES
from wrapper.kohya.render import SCRIPTS
from wrapper.kohya.rules import MIN_BUCKET_STEP

Size = tuple[int, int]
# Named aspect ratios for the histogram (width:height); each image goes to the nearest one.
RATIOS = ((9, 21), (9, 16), (2, 3), (3, 4), (4, 5), (1, 1), (5, 4), (4, 3), (3, 2), (16, 9), (21, 9))


@dataclass(frozen=True)
class ImageInfo:
    file: str
    sha256: str | None = None
    size: Size | None = None  # stored width x height
    format: str | None = None
    mode: str | None = None
    orientation: int = 1
    alpha: bool = False
    bucket: Size | None = None
    upscaled: bool = False
    error: str | None = None


@dataclass(frozen=True)
class CaptionInfo:
    file: str
    image: str
    tokens: int
    lines: int
    cut: dict[int, str]  # limit -> the words beyond it


@dataclass(frozen=True)
class AuditReport:
    path: Path
    family: str
    resolution: Size | None
    buckets: BucketRules | None
    images: tuple[ImageInfo, ...]
    captions: tuple[CaptionInfo, ...]
    problems: tuple[str, ...]  # training would stop, or train on the wrong thing
    warnings: tuple[str, ...]
    duplicates: tuple[tuple[str, ...], ...]
    aspect_ratios: dict[str, int]
    bucket_counts: dict[str, int]

    @property
    def max_tokens(self) -> int:
        return max((c.tokens for c in self.captions), default=0)

    def required_max_token_length(self) -> int | None:
        """None (75 tokens are enough), 150 or 225: what sd-scripts needs to keep every caption."""
        return recommend_max_token_length(c.tokens for c in self.captions)

    def over(self, limit: int) -> list[CaptionInfo]:
        return sorted((c for c in self.captions if c.tokens > limit), key=lambda c: -c.tokens)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"] = shown(self.path)
        data["max_tokens"] = self.max_tokens
        data["required_max_token_length"] = self.required_max_token_length()
        data["over"] = {str(limit): [c.file for c in self.over(limit)] for limit in LIMITS}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)

    def to_text(self, width: int = 100, per_image: bool = False) -> str:
        return render_text(self, width, per_image)


def recommend_max_token_length(token_counts: Iterable[int]) -> int | None:
    """The sd-scripts `max_token_length` for captions of these lengths: None, 150 or 225."""
    return required_max_token_length(max(token_counts, default=0))


def audit_dataset(
    path: Path,
    *,
    caption_extension: str = ".txt",
    resolution: Size | None = None,
    buckets: Mapping | object | None = None,
    family: str = "sd15",
    allow_empty_captions: bool = False,
    workers: int | None = None,
) -> AuditReport:
    """Audit the dataset at `path` as sd-scripts would read it (one subset per folder).

    `resolution` (width, height) enables the upscale and bucket checks; `buckets` holds the
    bucket settings (a mapping or the recipe's Buckets), None meaning buckets off. Settings
    sd-scripts would refuse are refused before anything is read.
    """
    if family not in CHECKPOINT_FAMILIES:  # all use the same CLIP BPE, so counts are the same
        raise DatasetError(
            f"model family {family!r} is not one of {', '.join(CHECKPOINT_FAMILIES)}"
            + did_you_mean(family, CHECKPOINT_FAMILIES)
        )
    rules = bucket_rules(buckets)
    problems = setting_problems(resolution, rules, family)
    problems += filter(None, [caption_extension_problem(caption_extension)])
    if len(problems) == 1:
        raise DatasetError(problems[0])
    collect(problems, DatasetError, "invalid audit settings")
    path = Path(path)
    folder = scan(path, caption_extension)
    images = _images(folder, resolution, rules, workers)
    captions, caption_problems, caption_warnings = _captions(folder, allow_empty_captions)
    groups = defaultdict(list)
    for info in images:
        if info.sha256:
            groups[info.sha256].append(info.file)
    duplicates = tuple(tuple(files) for files in groups.values() if len(files) > 1)
    problems = [f"{i.file}: {i.error}" for i in images if i.error] + caption_problems
    problems += [f"{name}: the name is not valid UTF-8; rename it (e.g. with convmv)" for name in folder.bad_names]
    problems += [
        f"{i.file}: {i.size[0]}x{i.size[1]} is smaller than one bucket step; sd-scripts fails on it"
        for i in images
        if i.bucket and 0 in i.bucket
    ]
    gone = sorted(f for f in _manifest_hashes(path) if not is_regular(path / f))
    if gone:
        problems.append(f"{len(gone)} file(s) listed in {MANIFEST} are missing: {', '.join(gone)}")
    if not folder.items:
        problems.insert(0, f"{shown(path)}: no images; sd-scripts would find nothing to train on and still exit 0")
    report = AuditReport(
        path=path,
        family=family,
        resolution=tuple(resolution) if resolution else None,
        buckets=rules if rules.enabled else None,
        images=tuple(images),
        captions=tuple(captions),
        problems=tuple(problems),
        warnings=(),
        duplicates=duplicates,
        aspect_ratios=_aspect_histogram(i.size for i in images if i.size),
        bucket_counts=dict(sorted(Counter(f"{i.bucket[0]}x{i.bucket[1]}" for i in images if i.bucket).items())),
    )
    warnings = _image_warnings(folder, report) + caption_warnings + _token_warnings(report)
    return replace(report, warnings=tuple(warnings))


def setting_problems(resolution: Size | None, rules: BucketRules, family: str = "sd15") -> list[str]:
    """What sd-scripts would assert on (or divide by zero over) in a resolution and bucket settings.

    Sources: train_util `BaseDataset.adjust_min_max_bucket_reso_by_steps` (limits rounded to the
    step, then min <= resolution <= max), `BucketManager.__init__`, `model_util.make_bucket_resolutions`
    (a step of 0 or a min rounded down to 0 divides by zero) and `verify_bucket_reso_steps`.
    """
    problems = size_problems("resolution", None if resolution is None else tuple(resolution))
    if not rules.enabled:
        return problems
    steps, low, high = rules.reso_steps, rules.min_reso, rules.max_reso
    for name, value in (("bucket_reso_steps", steps), ("min_bucket_reso", low), ("max_bucket_reso", high)):
        if type(value) is not int or value < 1:
            problems.append(f"{name} = {value!r}: expected a whole number of pixels >= 1")
    if problems:
        return problems
    script = SCRIPTS.get(family, "train_network.py")
    if steps % MIN_BUCKET_STEP[script]:
        problems.append(f"bucket_reso_steps = {steps}: {script} asserts it is divisible by {MIN_BUCKET_STEP[script]}")
    if high > MAX_SIDE:
        problems.append(f"max_bucket_reso = {high}: expected at most {MAX_SIDE}")
    if low > high:
        return [*problems, f"min_bucket_reso = {low} is above max_bucket_reso = {high}: sd-scripts asserts min <= max"]
    lo, hi = adjust_limits(rules)
    if lo == 0 and not rules.no_upscale:
        problems.append(
            f"min_bucket_reso = {low} rounds down to 0 (a multiple of bucket_reso_steps = {steps}) and sd-scripts "
            f"divides by it; expected at least {steps}"
        )
    if resolution is not None:
        (w, h), up, down = resolution, f" (rounded up to {hi})" if hi != high else "", f" (rounded to {lo})"
        if max(w, h) > hi:
            problems.append(
                f"resolution {w}x{h} is larger than max_bucket_reso = {high}{up}: sd-scripts asserts the longer "
                "side fits; raise max_bucket_reso or lower the resolution"
            )
        if min(w, h) < lo:
            problems.append(
                f"resolution {w}x{h} is smaller than min_bucket_reso = {low}{down if lo != low else ''}: "
                "sd-scripts asserts the shorter side reaches it; lower min_bucket_reso or raise the resolution"
            )
    return problems


def _images(folder: Folder, resolution: Size | None, rules: BucketRules, workers: int | None) -> list[ImageInfo]:
    from PIL import Image

    vouched = _manifest_hashes(folder.root)

    def one(rel: str) -> ImageInfo:
        try:
            data = (folder.root / rel).read_bytes()
        except OSError as exc:
            return ImageInfo(rel, error=f"cannot read ({exc.strerror or exc})")
        digest = hashlib.sha256(data).hexdigest()
        if not data:
            return ImageInfo(rel, digest, error="empty file (0 bytes)")
        try:
            info: Probe = probe(data, decode=vouched.get(rel) != digest)
        except Image.DecompressionBombError as exc:
            return ImageInfo(rel, digest, error=f"too large: {exc}")
        except OSError as exc:  # includes Pillow's UnidentifiedImageError
            return ImageInfo(rel, digest, error=_decode_error(exc))
        except (ValueError, SyntaxError, EOFError, struct.error) as exc:
            return ImageInfo(rel, digest, error=f"cannot decode ({exc})")
        bucket, upscaled = None, False
        if resolution:
            placement = place(info.size, tuple(resolution), rules)
            bucket, upscaled = placement.bucket, placement.upscaled
        return ImageInfo(rel, digest, info.size, info.format, info.mode, info.orientation, info.alpha, bucket, upscaled)

    with quiet_bomb_warnings(), ThreadPoolExecutor(workers or cpu_count()) as pool:
        return list(pool.map(one, [item.image for item in folder.items]))


def _decode_error(exc: OSError) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not an image (Pillow cannot identify it)"
    return f"truncated or corrupt ({exc})"


def _manifest_hashes(root: Path) -> dict[str, str]:
    """file -> sha256 from a gaze manifest in `root`, if there is a readable one."""
    if not is_regular(root / MANIFEST):  # a pipe would block the read forever
        return {}
    try:
        files = json.loads((root / MANIFEST).read_text(encoding="utf-8"))["files"]
        return {f["file"]: f["sha256"] for f in files if isinstance(f["file"], str)}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _captions(folder: Folder, allow_empty: bool) -> tuple[list[CaptionInfo], list[str], list[str]]:
    captions, problems, warnings, missing, empty, multi = [], [], [], [], [], []
    for item in folder.items:
        if item.caption is None:
            hint = folder.near_captions.get(item.image)
            missing.append(item.image + (f" (found {hint}; the extension is case-sensitive)" if hint else ""))
            continue
        try:
            data = (folder.root / item.caption).read_bytes()
            text, lines = read_caption(data)
        except OSError as exc:
            problems.append(f"{item.caption}: cannot read ({exc.strerror or exc})")
            continue
        except UnicodeDecodeError as exc:
            problems.append(f"{item.caption}: not UTF-8 (byte {exc.start}); sd-scripts stops on it")
            continue
        if not data:
            problems.append(f"{item.caption}: zero-byte caption file; sd-scripts stops on it (write one newline)")
        elif not text:
            empty.append(item.caption)
        if lines > 1:
            multi.append(item.caption)
        count = count_tokens(text)
        captions.append(CaptionInfo(item.caption, item.image, count.tokens, lines, count.cut))
    if missing:
        line = f"{len(missing)} image(s) without a caption: {', '.join(missing)}"
        (warnings if allow_empty else problems).append(line)
    if empty:
        warnings.append(f"{len(empty)} empty caption(s): {', '.join(empty)}")
    if multi:
        warnings.append(f"{len(multi)} caption(s) with several lines; sd-scripts uses the first: {', '.join(multi)}")
    return captions, problems, warnings


def _image_warnings(folder: Folder, report: AuditReport) -> list[str]:
    def note(files: list[str], text: str) -> None:
        if files:
            notes.append(f"{len(files)} {text}: {', '.join(files)}")

    notes: list[str] = []
    ok = [i for i in report.images if not i.error]
    note([i.file for i in ok if i.orientation != 1], "image(s) with EXIF rotation, which sd-scripts ignores")
    note(
        [i.file for i in ok if i.alpha],
        "image(s) with transparency; sd-scripts drops alpha without compositing",
    )
    note([i.file for i in ok if i.mode == "CMYK"], "CMYK image(s); sd-scripts converts them naively")
    note([i.file for i in ok if i.mode and i.mode.startswith("I")], "16-bit image(s); sd-scripts clips them")
    note([i.file for i in ok if i.upscaled], "image(s) smaller than their bucket (would be upscaled)")
    note(
        [i.file for i in report.images if Path(i.file).suffix not in SD_SCRIPTS_SUFFIXES],
        "image(s) whose extension case sd-scripts' glob misses (it skips them)",
    )
    note(
        [i.file for i in report.images if "/" in i.file],
        "image(s) in subfolders, used only if each is a subset",
    )
    for group in report.duplicates:
        notes.append(f"identical files: {', '.join(group)}")
    note(list(folder.orphans), "caption(s) without an image")
    notes += folder.notes()
    note(list(folder.ignored), "other file(s), ignored")
    return notes


def _token_warnings(report: AuditReport) -> list[str]:
    notes = []
    need = report.required_max_token_length()
    if need:
        longest = report.over(LIMITS[0])
        notes.append(
            f"{len(longest)} caption(s) over 75 CLIP tokens (longest {report.max_tokens}); sd-scripts cuts "
            f"them at 75 unless max_token_length is {need}"
        )
    for caption in report.over(LIMITS[-1]):
        notes.append(f"{caption.file}: {caption.tokens} tokens; even 225 loses: {caption.cut[LIMITS[-1]]}")
    return notes


def _aspect_histogram(sizes: Iterable[Size]) -> dict[str, int]:
    counts = Counter()
    for w, h in sizes:
        nearest = min(RATIOS, key=lambda r: abs(math.log(w / h) - math.log(r[0] / r[1])))
        counts[nearest] += 1
    return {f"{w}:{h}": counts[(w, h)] for w, h in RATIOS if counts[(w, h)]}


def render_text(report: AuditReport, width: int = 100, per_image: bool = False) -> str:
    """The report as a plain-text table for a terminal; `per_image` adds a row per image."""

    def clip(text: str, room: int) -> str:
        return text if len(text) <= room else text[: max(0, room - 1)] + "…"

    ok = [i for i in report.images if not i.error]
    need = report.required_max_token_length()
    setup = [f"family {report.family}"]
    if report.resolution:
        setup.append(f"resolution {report.resolution[0]}x{report.resolution[1]}")
        setup.append("buckets on" if report.buckets else "buckets off")
    lines = [
        f"audit of {shown(report.path)} ({', '.join(setup)})",
        f"  images {len(report.images)} ({len(report.images) - len(ok)} unreadable), "
        f"captions {len(report.captions)}, longest caption {report.max_tokens} tokens, "
        f"max_token_length needed: {need or 'no (75 is enough)'}",
    ]
    long = report.over(LIMITS[0])
    if long:
        lines += ["", f"captions over 75 tokens ({len(long)}), with the words each limit cuts:"]
        for c in long:
            lines.append(f"  {c.tokens:5d}  {c.file}")
            for limit, words in c.cut.items():
                lines.append(clip(f"         >{limit}: {words}", width))
    if report.aspect_ratios:
        lines += ["", "aspect ratios (width:height, nearest):"]
        most = max(report.aspect_ratios.values())
        for ratio, n in report.aspect_ratios.items():
            lines.append(f"  {ratio:>5}  {n:5d}  " + "#" * max(1, round(40 * n / most)))
    if report.bucket_counts:
        lines += ["", "buckets (sd-scripts rules):" if report.buckets else "single bucket (buckets off):"]
        lines += [f"  {reso:>10}  {n:5d}" for reso, n in report.bucket_counts.items()]
    if per_image:
        tokens = {c.image: c.tokens for c in report.captions}
        lines += ["", f"  {'size':>10}  {'bucket':>10}  {'tokens':>6}  image"]
        for i in report.images:
            size = f"{i.size[0]}x{i.size[1]}" if i.size else "-"
            bucket = f"{i.bucket[0]}x{i.bucket[1]}" if i.bucket else "-"
            flag = " (upscaled)" if i.upscaled else f" ({i.error})" if i.error else ""
            lines.append(clip(f"  {size:>10}  {bucket:>10}  {tokens.get(i.file, '-'):>6}  {i.file}{flag}", width))
    for title, items in (("problems (blocking)", report.problems), ("warnings", report.warnings)):
        if items:
            lines += ["", f"{title}:"] + [clip(f"  - {text}", width) for text in items]
    if not report.problems:
        lines += ["", "no blocking problems"]
    return "\n".join(lines) + "\n"
