"""Commands about datasets: prep (derive a training folder) and audit (check one)."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from wrapper.files import write_atomic
from wrapper.kohya.models import CHECKPOINT_FAMILIES
from wrapper.recipe import Buckets, Prep
from wrapper.recipe.model import MAX_SIDE, MIN_SIDE

# Kept literal so `gaze --help` need not import the preparation code (a test checks they agree).
OPERATIONS = ("crop-orientation", "uncropped", "stretch", "jpeg-inject")
FORMATS = ("webp", "png", "bmp")
SIDES = (MIN_SIDE, MAX_SIDE)  # the sizes gaze prepares and trains at, per side
BOUND = f"each side {SIDES[0]}..{SIDES[1]} px"
COLOURS = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128), "gray": (128, 128, 128)}


def parse_size(ctx: click.Context | None, param: click.Parameter | None, value: str | None):
    """'832x1216' -> (832, 1216); a single number means a square. Each side must be within SIDES."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x×,]\s*(\d+))?\s*", value, re.ASCII)
    if not match:
        raise click.BadParameter(f"{value!r} is not a size like 832x1216")
    size = int(match[1]), int(match[2] or match[1])
    if not all(SIDES[0] <= side <= SIDES[1] for side in size):
        raise click.BadParameter(f"{value.strip()}: each side must be {SIDES[0]}..{SIDES[1]} px")
    return size


def parse_colour(ctx: click.Context | None, param: click.Parameter | None, value: str) -> tuple[int, int, int]:
    """'white', '#ffffff' or '255,255,255' -> (255, 255, 255)."""
    text = value.strip().lower()
    if text in COLOURS:
        return COLOURS[text]
    if re.fullmatch(r"#[0-9a-f]{6}", text):
        return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))
    parts = text.split(",")
    if len(parts) == 3 and all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        return tuple(int(p) for p in parts)
    raise click.BadParameter(f"{value!r} is not a colour (white, black, grey, #rrggbb or r,g,b)")


class _Progress:
    """A click progress bar as a (done, total) callback; silent when stderr is not a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)
        if done >= total:
            self.close()

    def close(self) -> None:
        """End the bar's line, so a message after it (an error) starts on a line of its own."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@contextmanager
def _stoppable(progress: _Progress | None = None) -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP end the command with one line and exit status 128 + the signal;
    the library has stopped its workers and removed its unfinished output by then."""
    from wrapper.dataset.workers import Interrupted, stopping_on_signals

    try:
        with stopping_on_signals():
            try:
                yield
            finally:
                if progress:
                    progress.close()
    except Interrupted as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(128 + exc.signum)


@click.command("prep")
@click.argument("source", required=False, type=click.Path(path_type=Path))
@click.option("--op", "ops", multiple=True, required=True, type=click.Choice(OPERATIONS),
              help="Operation; repeat to chain one geometric operation with jpeg-inject.")
@click.option("--portrait", default="{}x{}".format(*Prep().portrait), callback=parse_size, show_default=True,
              help=f"crop-orientation: size for portrait images ({BOUND}).")
@click.option("--landscape", default="{}x{}".format(*Prep().landscape), callback=parse_size, show_default=True,
              help=f"crop-orientation: size for landscape images ({BOUND}).")
@click.option("--square", default=None, callback=parse_size,
              help=f"crop-orientation: size for square images (default: the portrait size; {BOUND}).")
@click.option(
    "--size", default=None, callback=parse_size, help=f"stretch: the one fixed size, e.g. 1024x1024 ({BOUND})."
)
@click.option("--jpeg-fraction", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="jpeg-inject: share of images to re-encode.")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=Prep().jpeg_quality, show_default=True,
              help="jpeg-inject: JPEG quality of the re-encoded images.")
@click.option("--seed", type=int, default=0, show_default=True, help="jpeg-inject: which images are chosen.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="webp", show_default=True,
              help="Lossless output format (webp is fast and small; png reads everywhere).")
@click.option("--background", default="white", callback=parse_colour, show_default=True,
              help="What transparent pixels become: a name, #rrggbb or r,g,b.")
@click.option("--caption-extension", default=".txt", show_default=True)
@click.option("--allow-empty-captions", is_flag=True, help="Give images without a caption an empty one.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where prepared folders live (default: <settings cache_dir>/prepared).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write here instead of the cache (must be new or empty).")
@click.option(
    "--workers", type=click.IntRange(1), default=None, help="Processes to use (default: all cores; at most 4 per core)."
)
def prep(
    source: Path | None,
    ops: tuple[str, ...],
    portrait,
    landscape,
    square,
    size,
    jpeg_fraction: float,
    jpeg_quality: int,
    seed: int,
    fmt: str,
    background,
    caption_extension: str,
    allow_empty_captions: bool,
    cache_dir: Path | None,
    out: Path | None,
    workers: int | None,
) -> None:
    """Prepare a training folder from SOURCE (default: the settings' dataset); print its path.

    SOURCE is never modified. Square images get the portrait size unless --square is given.

    Example: gaze prep ~/data/fashion --op crop-orientation --op jpeg-inject --jpeg-fraction 0.2
    """
    from wrapper.dataset.images import Geometry
    from wrapper.dataset.prep import JpegInject, Plan, prepare
    from wrapper.errors import DatasetError
    from wrapper.settings import dataset_for, load_settings

    settings = load_settings()
    source = dataset_for(settings, source)

    geometric = [op for op in ops if op != "jpeg-inject"]
    if len(set(geometric)) > 1:
        raise DatasetError(f"choose one of {', '.join(geometric)}: they all set the framing")
    geometry = Geometry(geometric[0] if geometric else "uncropped", portrait, landscape, square, size)
    jpeg = JpegInject(jpeg_fraction, jpeg_quality, seed) if "jpeg-inject" in ops else None
    plan = Plan(geometry, jpeg, fmt, background, caption_extension, allow_empty_captions)
    progress = _Progress(plan.name)
    with _stoppable(progress):
        result = prepare(source, plan, cache_dir or settings.prepared_dir, out=out, workers=workers, progress=progress)
    state = "reused" if result.reused else "prepared"
    click.echo(f"{state} {result.images} images ({plan.name}); manifest {result.manifest.name}", err=True)
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    click.echo(str(result.path))


@click.command("audit")
@click.argument("dataset", required=False, type=click.Path(path_type=Path))
@click.option("--caption-extension", default=".txt", show_default=True)
@click.option("--resolution", default=None, callback=parse_size,
              help=f"Training resolution (e.g. 1024 or 832x1216; {BOUND}): turns on upscale and bucket checks.")
@click.option("--buckets/--no-buckets", default=True, show_default=True, help="Bucketing on (with --resolution).")
# Plain ints: the library says what sd-scripts expects of them (and of the three together).
@click.option("--min-bucket-reso", type=int, default=Buckets().min_reso, show_default=True)
@click.option("--max-bucket-reso", type=int, default=Buckets().max_reso, show_default=True, help=f"At most {SIDES[1]}.")
@click.option("--bucket-reso-steps", type=int, default=Buckets().reso_steps, show_default=True)
@click.option("--bucket-no-upscale", is_flag=True)
@click.option("--family", type=click.Choice(list(CHECKPOINT_FAMILIES)), default="sd15", show_default=True)
@click.option("--allow-empty-captions", is_flag=True, help="Report images without a caption as a warning only.")
@click.option("--images", "per_image", is_flag=True, help="Add a row per image: size, bucket, caption tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the JSON report to this file.")
def audit(
    dataset: Path | None,
    caption_extension: str,
    resolution,
    buckets: bool,
    min_bucket_reso: int,
    max_bucket_reso: int,
    bucket_reso_steps: int,
    bucket_no_upscale: bool,
    family: str,
    allow_empty_captions: bool,
    per_image: bool,
    as_json: bool,
    report: Path | None,
) -> None:
    """Check a dataset: bad images, captions, CLIP token lengths, buckets; exit 1 on problems.

    DATASET defaults to the settings' dataset.

    Example: gaze audit ~/data/fashion --resolution 832x1216 --max-bucket-reso 1216
    """
    from wrapper.dataset.audit import audit_dataset
    from wrapper.errors import DatasetError
    from wrapper.settings import dataset_for, load_settings

    dataset = dataset_for(load_settings(), dataset)
    if report and not report.parent.is_dir():
        raise DatasetError(f"{report}: cannot write the report: {report.parent} is not a folder")
    rules = (
        {
            "enabled": True,
            "min_reso": min_bucket_reso,
            "max_reso": max_bucket_reso,
            "reso_steps": bucket_reso_steps,
            "no_upscale": bucket_no_upscale,
        }
        if buckets
        else None
    )
    with _stoppable():
        result = audit_dataset(
            dataset,
            caption_extension=caption_extension,
            resolution=resolution,
            buckets=rules,
            family=family,
            allow_empty_captions=allow_empty_captions,
        )
    if report:
        try:
            write_atomic(report, result.to_json() + "\n")
        except OSError as exc:
            raise DatasetError(f"{report}: cannot write the report: {exc.strerror or exc}") from exc
    if as_json:
        click.echo(result.to_json())
    else:
        width = max(60, min(160, shutil.get_terminal_size().columns if sys.stdout.isatty() else 100))
        click.echo(result.to_text(width, per_image))
    if result.problems:
        raise DatasetError(f"{dataset}: {len(result.problems)} blocking problem(s), listed above")


COMMANDS = [prep, audit]
