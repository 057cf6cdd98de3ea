"""The run folder: its names, typed records, readers and writes. Every other module reads runs here.

runs/<recipe>/<UTC YYYYmmddTHHMMSSZ>-<6 hex>/
  recipe.json  run.json  command.json  environment.json  manifest.json  status.json  resume.json
  placement.json  where it runs or ran (host, GPUs, Slurm job), when a sweep started it
  dataset.toml  config.toml  sample_prompts.txt  train.log
  logs/          sd-scripts' TensorBoard folder (one timestamped sub-folder per launch)
  output/        LoRA files, -state folders, sample/ (names: wrapper.kohya.outputs)
  report.html  report.md  plots/
  generations/<UTC time>-<id>/   one `gaze generate` call: images, index.json, sheets, generation.html
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_type_hints

from wrapper.errors import RunError, did_you_mean
from wrapper.files import write_json
from wrapper.kohya import outputs
from wrapper.recipe import FAMILIES
from wrapper.recipe.checks import type_problem

if TYPE_CHECKING:
    import pandas as pd

State = Literal["queued", "running", "succeeded", "failed", "interrupted", "lost"]
ACTIVE = ("queued", "running")  # states that need an owner alive: without one a run is "lost"
STATUS, RECIPE, RUN, COMMAND, ENVIRONMENT, MANIFEST, RESUME, LOG = (
    "status.json",
    "recipe.json",
    "run.json",
    "command.json",
    "environment.json",
    "manifest.json",
    "resume.json",
    "train.log",
)
LOCK = "run.lock"
PLACEMENT = "placement.json"
Backend = Literal["local", "slurm"]
LOGS, OUTPUT, PLOTS, GENERATIONS = "logs", "output", "plots", "generations"
GENERATION_INDEX, GENERATION_PAGE = "index.json", "generation.html"
METRICS_JSON, METRICS_CSV = "metrics.json", "metrics.csv"  # `gaze metrics`, in a run or a generation folder
#: Files gaze writes into every run folder it creates: any one of them marks a run folder.
MARKERS = (RECIPE, RUN, STATUS)


@dataclass(frozen=True)
class Status:
    state: State
    started_at: str | None = None
    ended_at: str | None = None
    exit_code: int | None = None
    failure_class: str | None = None
    message: str | None = None
    launches: int = 0


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    """run.json: where a run's inputs were and what the trainer was told."""

    model: str
    output_name: str
    family: str
    sd_scripts: str
    dataset_source: str = ""
    image_dir: str = ""
    gpus: int = 1
    threads: int = 1  # CPU threads per process
    mixed_precision: str = "no"  # the launcher's copy of the recipe's value
    script: str = ""
    max_train_steps: int = 0
    tokenizer_cache_dir: str | None = None
    main_process_port: int | None = None  # accelerate's, when runs share a machine
    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])  # config.toml's log_with, as asked


@dataclass(frozen=True, kw_only=True)
class RecipeRecord:
    """recipe.json: the resolved recipe, its modifiers and its deliberate glitches."""

    name: str = ""
    baseline: str = ""
    family: str = ""
    modifiers: list[str] = field(default_factory=list)
    glitches: list[str] = field(default_factory=list)
    deliberate_mismatch: bool = False
    description: str = ""
    recipe: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Placement:
    """placement.json: where a sweep's member runs (or will): backend, machine, GPUs, Slurm job."""

    backend: Backend = "local"
    sweep: str | None = None  # the sweep folder it belongs to
    host: str | None = None
    gpus: str | None = None  # CUDA_VISIBLE_DEVICES of its trainer; None: not pinned (or a CPU)
    slurm_job: str | None = None  # "<array job>_<task>"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} is missing: is {path.parent} a gaze run directory?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path} is not valid JSON ({exc})") from None


def _typed(path: Path, cls: type, data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The keys of `data` that are fields of `cls` with values of their annotated types, and a problem
    (naming the file, key, value and what was expected) for every other key."""
    hints = get_type_hints(cls)
    good, problems = {}, []
    for key, value in data.items():
        if key not in hints:
            problems.append(f"{path}: unknown key {key!r}{did_you_mean(key, hints)}")
        elif wanted := type_problem(value, hints[key]):
            text = json.dumps(value)
            shown = text if len(text) <= 60 else text[:57] + "..."
            problems.append(f"{path}: key {key!r} is {shown}; expected {wanted}")
        else:
            good[key] = value
    return good, problems


def _record(path: Path, cls: type, data: Any) -> Any:
    """`cls(**data)`, or a RunError naming the file and the key that is wrong."""
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object, found {type(data).__name__}")
    good, problems = _typed(path, cls, data)
    if problems:
        raise RunError(problems[0])
    try:
        return cls(**good)
    except TypeError as exc:
        raise RunError(f"{path}: {exc}") from None


def read_fields(path: Path, cls: type) -> tuple[dict[str, Any], list[str]]:
    """A record file read leniently, for reports: the well-typed keys ({} when the file is absent) and
    a problem for each key, or the whole file, that could not be used."""
    if not path.exists():
        return {}, []
    if not path.is_file():
        return {}, [f"{path} is not a file"]
    try:
        data = read_json(path)
    except RunError as exc:
        return {}, [str(exc)]
    if not isinstance(data, dict):
        return {}, [f"{path}: expected a JSON object, found {type(data).__name__}"]
    return _typed(path, cls, data)


def _lost(run_dir: Path, state: str) -> bool:
    """A queued or running run with no gaze process holding it (Slurm holds a queued run itself)."""
    if state == "queued" and read_placement(run_dir).backend == "slurm":
        return False
    return state in ACTIVE and holder(run_dir) is None


LOST = ("the gaze process that ran it is gone (killed, or its machine stopped); `gaze resume` continues from "
        "the newest saved state")


def status_fields(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """status.json read leniently (for reports), "lost" applied like read_status."""
    values, problems = read_fields(Path(run_dir) / STATUS, Status)
    if values.get("state") and _lost(Path(run_dir), values["state"]):
        values.update(state="lost", message=LOST)
    return values, problems


def read_record(path: Path, cls: type) -> Any:
    """A JSON file read into the dataclass `cls`, or a RunError naming the file and the wrong key."""
    return _record(path, cls, read_json(path))


def read_status(run_dir: Path) -> Status:
    """status.json, with a queued or running run whose gaze process is gone shown as "lost".

    A run queued on Slurm has no gaze process until its job starts: Slurm holds it (`gaze status`
    asks squeue whether its job is still there)."""
    status = _record(run_dir / STATUS, Status, read_json(run_dir / STATUS))
    return replace(status, state="lost", message=LOST) if _lost(Path(run_dir), status.state) else status


@contextmanager
def run_lock(run_dir: Path, *, purpose: str, shared: bool = False) -> Iterator[int]:
    """Hold the run's lock while training (exclusive) or reading its LoRAs (shared); yields its fd.

    The kernel releases it when its last holder exits, however it exits, so a lock never outlives
    the processes that hold it (pass the fd to a child to keep it held until the child ends).
    """
    path = Path(run_dir) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = holder(run_dir) or "another process"
            raise RunError(f"{run_dir} is in use by {owner}; wait for it to finish or stop it first") from None
        if not shared:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
                                     "since": utc_now()}).encode())
        yield fd
    finally:
        os.close(fd)


def holder(run_dir: Path) -> str | None:
    """Who holds the run's lock ("pid 123 on host, training since ..."), or None when nobody does."""
    info = lock_info(run_dir)
    if info is None:
        return None
    if "pid" not in info:
        return "a gaze process"
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('purpose')} since {info.get('since')})"


def lock_info(run_dir: Path) -> dict[str, Any] | None:
    """What the lock's holder wrote (pid, host, purpose, since, and `group`: its trainer's process
    group once one runs), or None when nobody holds the lock ({} when the holder wrote nothing)."""
    path = Path(run_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: a probe never blocks a reader
        except BlockingIOError:
            try:
                info = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                info = {}
            return info if isinstance(info, dict) else {}
        return None
    finally:
        os.close(fd)


def note_trainer_group(lock_fd: int, group: int) -> None:
    """Add the trainer's process group to what the lock holder wrote, so `gaze cancel` can stop that
    one run (a pool's runs share one holder pid)."""
    try:
        info = json.loads(os.pread(lock_fd, 4096, 0) or b"{}")
    except ValueError:
        info = {}
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, json.dumps({**info, "purpose": "training", "group": group}).encode(), 0)


def read_placement(run_dir: Path) -> Placement:
    """placement.json, or a local placement with nothing known when the run has none (`gaze run`)."""
    path = Path(run_dir) / PLACEMENT
    return _record(path, Placement, read_json(path)) if path.is_file() else Placement()


def write_placement(run_dir: Path, placement: Placement) -> None:
    write_json(Path(run_dir) / PLACEMENT, asdict(placement))


def write_status(run_dir: Path, status: Status) -> None:
    write_json(run_dir / STATUS, asdict(status))


def read_run_info(run_dir: Path) -> RunInfo:
    """run.json, checked for the keys every reader needs."""
    path = Path(run_dir) / RUN
    if not path.is_file():
        raise RunError(f"{run_dir}: not a run directory (no {RUN}); expected runs/<recipe>/<stamp>/")
    info = _record(path, RunInfo, read_json(path))
    for key in ("model", "output_name", "family", "sd_scripts", "script", "mixed_precision"):
        if not isinstance(getattr(info, key), str):
            raise RunError(f"{path}: key {key!r} must be a string")
    for key in ("model", "output_name", "family"):
        if not getattr(info, key):
            raise RunError(f"{path}: key {key!r} must not be empty")
    port = info.main_process_port
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
        raise RunError(f"{path}: key 'main_process_port' is {port!r}; expected a TCP port (1-65535) or null")
    for key in ("gpus", "threads", "max_train_steps"):
        value = getattr(info, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "max_train_steps" else 1):
            raise RunError(f"{path}: key {key!r} is {value!r}; expected a positive integer")
    if info.family not in FAMILIES:
        raise RunError(f"{path}: key 'family' is {info.family!r}; expected one of {', '.join(FAMILIES)}")
    return info


def write_run_info(run_dir: Path, info: RunInfo) -> None:
    write_json(run_dir / RUN, asdict(info))


def read_recipe_record(run_dir: Path) -> RecipeRecord:
    """recipe.json, or an empty record when the run has none (a run folder made by hand)."""
    path = Path(run_dir) / RECIPE
    return _record(path, RecipeRecord, read_json(path)) if path.is_file() else RecipeRecord()


def write_recipe_record(run_dir: Path, record: RecipeRecord) -> None:
    write_json(run_dir / RECIPE, asdict(record))


def read_optional(path: Path) -> dict[str, Any]:
    """A JSON object from a file that may be missing ({}); anything but an object is an error."""
    if not path.is_file():
        return {}
    data = read_json(path)
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def recipe_name(run_dir: Path) -> str:
    """The recipe a run trained: recipe.json's name, else the run's parent folder."""
    return read_recipe_record(run_dir).name or Path(run_dir).parent.name


def new_run_dir(runs_dir: Path, name: str, *, now: datetime | None = None) -> Path:
    """Create and return a fresh run directory; an existing one is never reused."""
    return new_stamped_dir(Path(runs_dir) / name, now=now)


def new_generation_dir(run_dir: Path, *, now: datetime | None = None) -> Path:
    """A fresh `generations/<stamp>-<id>` folder of a run."""
    return new_stamped_dir(Path(run_dir) / GENERATIONS, now=now)


def new_stamped_dir(parent: Path, *, now: datetime | None = None) -> Path:
    """A fresh `<parent>/<UTC YYYYmmddTHHMMSSZ>-<6 hex>` folder, never one that existed."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunError(f"{parent} (or a folder above it) is a file, not a folder") from None
    for _ in range(20):
        path = parent / f"{stamp}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RunError(f"could not create a new folder under {parent}")


def generation_indexes(run_dir: Path) -> list[Path]:
    """index.json of every generation folder of a run, oldest first."""
    return sorted(Path(run_dir).glob(f"{GENERATIONS}/*/{GENERATION_INDEX}"))


def output_dir(run_dir: Path) -> Path:
    return Path(run_dir) / OUTPUT


def logs_dir(run_dir: Path) -> Path:
    return Path(run_dir) / LOGS


def final_lora(run_dir: Path, output_name: str) -> Path:
    return output_dir(run_dir) / outputs.final_lora_name(output_name)


def saved_states(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete saved state, oldest first."""
    return outputs.saved_states(output_dir(run_dir))


def list_checkpoints(run_dir: Path, output_name: str) -> dict[str, tuple[int | None, Path]]:
    """LoRA files in output/ by name: 'step1000'... in step order, then 'final', then other stems."""
    output = output_dir(run_dir)
    if not output.is_dir():
        return {}
    step_stem = outputs.step_lora_stem(output_name)
    steps, final, others = [], {}, {}
    for path in sorted(output.iterdir()):
        if path.suffix not in outputs.LORA_SUFFIXES or not path.is_file():
            continue
        if match := step_stem.match(path.stem):
            steps.append((f"step{int(match[1])}", (int(match[1]), path)))
        elif path.stem == output_name:
            final["final"] = (None, path)
        else:
            others[path.stem] = (None, path)
    return {**dict(sorted(steps, key=lambda item: item[1][0])), **final, **others}


def log_tail(run_dir: Path, lines: int = 15) -> list[str]:
    """The last lines the trainer printed ([] before it printed anything)."""
    path = Path(run_dir) / LOG
    if not path.is_file():
        return []
    return path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]


def find_run(text: str, runs_dir: Path) -> Path:
    """A run as the user names it: a path, or a recipe folder under the runs folder (`sd15-standard`)."""
    path = Path(text)
    if path.exists():
        return path
    candidate = Path(runs_dir) / text
    return candidate if candidate.exists() else path


def is_run_dir(path: Path) -> bool:
    """A folder gaze made for one run: it holds recipe.json, run.json or status.json."""
    return Path(path).is_dir() and any((Path(path) / m).is_file() for m in MARKERS)


def resolve_run_dir(path: Path | str) -> Path:
    """A run folder, or the newest run in a recipe folder (runs/<recipe>/)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} is a file, not a run folder; expected runs/<recipe>/<stamp>/ or runs/<recipe>/")
    if not path.is_dir():
        siblings = [p.name for p in path.parent.iterdir()] if path.parent.is_dir() else []
        raise RunError(f"no run folder {str(path)!r}{did_you_mean(path.name, siblings)}")
    if is_run_dir(path):
        return path
    found = sorted(p for p in path.iterdir() if is_run_dir(p))
    if not found:
        raise RunError(f"{path} is not a run folder: expected {', '.join(MARKERS)} in it or in a folder below it")
    return found[-1]


def run_labels(run_dirs: Sequence[Path], names: Sequence[str]) -> list[str]:
    """One label per run: its recipe name, with the run folder's name added where names repeat."""
    return [f"{n} ({Path(p).name})" if names.count(n) > 1 else n for n, p in zip(names, run_dirs, strict=True)]


def read_run_scalars(run_dir: Path | str, run: str | None = None) -> pd.DataFrame:
    """Every scalar of a run's TensorBoard logs (`logs/`, or the folder itself when it has none)."""
    from wrapper.curves.tblog import read_log_scalars

    run_dir = Path(run_dir)
    folder = logs_dir(run_dir) if logs_dir(run_dir).is_dir() else run_dir
    return read_log_scalars(folder, run if run is not None else run_dir.name)
