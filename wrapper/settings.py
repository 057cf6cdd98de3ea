"""Where this machine keeps datasets, checkpoints and runs: said once, overridable per command.

Precedence: command-line option > environment variable > settings file (`gaze.toml` in the
working directory, or the file named by $GAZE_SETTINGS) > built-in default.

    dataset = "~/data/fashion"            # GAZE_DATASET
    runs_dir = "runs"                     # GAZE_RUNS_DIR
    cache_dir = ".cache"                  # GAZE_CACHE_DIR (prepared datasets, demo models)
    tokenizer_cache_dir = "~/tokenizers"  # GAZE_TOKENIZER_CACHE_DIR (optional, offline tokenizers)
    recipes = "my_recipes.py"             # GAZE_RECIPES (your own recipes and modifiers)
    [models]                              # GAZE_MODEL_<NAME>, e.g. GAZE_MODEL_SD15
    sd15 = "~/models/v1-5-pruned-emaonly.safetensors"
    sdxl = "~/models/sd_xl_base_1.0.safetensors"
    mismatched = "~/models/another-base.safetensors"   # used by the mismatched-base modifier
    on = "local"                          # GAZE_ON: where queue/sweep runs execute (local or slurm)
    trackers = ["tensorboard", "wandb"]   # GAZE_TRACKERS: TensorBoard always; add Weights & Biases
    [slurm]                               # the resources of each run of `--on slurm`
    partition = "gpu"
    time_min = 240                        # minutes per run (per attempt: a requeue starts anew)
    gpus_per_run = 1
    cpus_per_run = 8
    mem_gb = 64
    max_parallel = 8                      # array tasks at once (default: all)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from wrapper.errors import DatasetError, GazeError, did_you_mean

PREPARED = "prepared"  # the cache folder of prepared datasets
KEYS = ("dataset", "runs_dir", "cache_dir", "tokenizer_cache_dir", "models", "recipes", "metrics", "on", "slurm",
        "trackers")
#: [metrics]: local weights for the metrics that need them (wrapper.generation.learned); never downloaded.
METRICS_KEYS = ("clip", "clip_arch", "dino", "lpips")
BACKENDS = ("local", "slurm")
Backend = Literal["local", "slurm"]
#: Where a run's scalars go. TensorBoard is always on (gaze's reports read it); wandb is added to it.
TRACKERS = ("tensorboard", "wandb")


@dataclass(frozen=True, kw_only=True)
class SlurmSettings:
    """The `[slurm]` table: what each run of a sweep asks Slurm for."""

    partition: str | None = None  # None: the cluster's default partition
    account: str | None = None
    qos: str | None = None
    time_min: int = 240
    gpus_per_run: int = 1
    cpus_per_run: int = 8
    mem_gb: int = 64
    max_parallel: int | None = None  # array tasks at once; None: all of them
    setup: tuple[str, ...] = ()  # shell lines run before each task (module load ...)


#: The least each number may be (gpus_per_run 0: a CPU-only run).
SLURM_MINIMA = {"time_min": 1, "gpus_per_run": 0, "cpus_per_run": 1, "mem_gb": 1, "max_parallel": 1}
SLURM_KEYS = tuple(f.name for f in fields(SlurmSettings))


@dataclass(frozen=True)
class Settings:
    dataset: Path | None = None
    runs_dir: Path = Path("runs")
    cache_dir: Path = Path(".cache")
    tokenizer_cache_dir: Path | None = None
    models: dict[str, Path] = field(default_factory=dict)
    recipes: Path | None = None  # a Python file of the user's own RECIPES / MODIFIERS
    metrics: dict[str, Path | str] = field(default_factory=dict)  # [metrics]: weight files, clip_arch
    origin: str = "defaults"  # the settings file read, for messages
    on: Backend = "local"  # where queue and sweep run their runs
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    trackers: tuple[str, ...] = ("tensorboard",)  # always with tensorboard first (check_trackers)

    @property
    def file(self) -> str:
        """The settings file to edit: the one read, else gaze.toml here."""
        return "gaze.toml" if self.origin == "defaults" else self.origin

    @property
    def prepared_dir(self) -> Path:
        """Where prepared datasets are cached: shared by `gaze prep` and training runs."""
        return self.cache_dir / PREPARED


def _env_name(model: str) -> str:
    return "GAZE_MODEL_" + model.upper().replace("-", "_")


PATH_KEYS = ("dataset", "runs_dir", "cache_dir", "tokenizer_cache_dir", "recipes")


def read_settings_file(path: Path, *, required: bool) -> dict:
    """The settings file's table, every key and value checked; {} when an optional file is absent."""
    if not path.is_file():
        if required or path.exists():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise GazeError(f"settings file {path} (GAZE_SETTINGS) {what}; point GAZE_SETTINGS at a gaze.toml "
                            "or unset it")
        return {}
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise GazeError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise GazeError(f"{path}: not valid TOML: {exc}") from None
    for key, value in raw.items():
        if key not in KEYS:
            raise GazeError(f"{path}: unknown setting {key!r}{did_you_mean(key, KEYS)}")
        if key in PATH_KEYS and (not isinstance(value, str) or not value.strip()):
            raise GazeError(f"{path}: {key} = {value!r}; expected a path as a non-empty string")
    _string_table(raw, "models", path, what="the checkpoint's path")
    _string_table(raw, "metrics", path, what="a path (or clip_arch's name)", keys=METRICS_KEYS)
    if "on" in raw:
        check_backend(raw["on"], f"{path}: on")
    slurm_settings(raw.get("slurm", {}), f"{path}: [slurm]")
    if "trackers" in raw:
        check_trackers(raw["trackers"], f"{path}: trackers")
    return raw


def _string_table(raw: dict, name: str, path: Path, *, what: str, keys: tuple[str, ...] | None = None) -> None:
    """[models] / [metrics]: a table of name = "non-empty string" (only `keys`, when given)."""
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise GazeError(f'{path}: {name} = {table!r}; expected a [{name}] table of name = "path"')
    for key, value in table.items():
        if keys is not None and key not in keys:
            raise GazeError(f"{path}: [{name}] {key}: unknown key{did_you_mean(key, keys)}; expected {', '.join(keys)}")
        if not isinstance(value, str) or not value.strip():
            raise GazeError(f"{path}: [{name}] {key} = {value!r}; expected {what} as a non-empty string")


def check_backend(value: object, where: str) -> Backend:
    if value not in BACKENDS:
        raise GazeError(f"{where} = {value!r}; expected one of {', '.join(map(repr, BACKENDS))}"
                        f"{did_you_mean(str(value), BACKENDS)}")
    return value  # type: ignore[return-value]


def check_trackers(value: object, where: str) -> tuple[str, ...]:
    """A list of tracker names (or one comma-separated string), as ("tensorboard", ...): TensorBoard is
    always kept, whether named or not."""
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise GazeError(f'{where} = {value!r}; expected a list of tracker names, e.g. ["tensorboard", "wandb"]')
    for name in names:
        if name not in TRACKERS:
            raise GazeError(f"{where}: unknown tracker {name!r}{did_you_mean(name, TRACKERS)}; expected "
                            f"{' or '.join(TRACKERS)}")
    return tuple(t for t in TRACKERS if t == "tensorboard" or t in names)


def slurm_settings(table: object, where: str) -> SlurmSettings:
    """The `[slurm]` table checked key by key: unknown keys (with a did-you-mean) and wrong types."""
    if not isinstance(table, dict):
        raise GazeError(f"{where} = {table!r}; expected a table of Slurm resources")
    for key, value in table.items():
        if key not in SLURM_KEYS:
            raise GazeError(f"{where}: unknown key {key!r}{did_you_mean(key, SLURM_KEYS)}; expected one of "
                            f"{', '.join(SLURM_KEYS)}")
        if key in SLURM_MINIMA:
            if not isinstance(value, int) or isinstance(value, bool) or value < SLURM_MINIMA[key]:
                raise GazeError(f"{where} {key} = {value!r}; expected a whole number >= {SLURM_MINIMA[key]}")
        elif key == "setup":
            if not isinstance(value, list) or not all(isinstance(line, str) for line in value):
                raise GazeError(f"{where} setup = {value!r}; expected a list of shell lines (strings)")
        elif not isinstance(value, str) or not value.strip():
            raise GazeError(f"{where} {key} = {value!r}; expected a non-empty string")
    return SlurmSettings(**{k: tuple(v) if k == "setup" else v for k, v in table.items()})


def load_settings(path: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read the settings file (if any) and let the environment override it."""
    env = dict(os.environ if env is None else env)
    required = path is not None or bool(env.get("GAZE_SETTINGS"))
    path = path or (Path(env["GAZE_SETTINGS"]).expanduser() if env.get("GAZE_SETTINGS") else Path.cwd() / "gaze.toml")
    raw = read_settings_file(path, required=required)
    base = path.parent

    def place(value: str | None) -> Path | None:
        return None if not value else (base / Path(value).expanduser()).resolve()

    models = {name: place(value) for name, value in raw.get("models", {}).items()}
    for name, value in env.items():
        if name.startswith("GAZE_MODEL_") and value:
            models[name.removeprefix("GAZE_MODEL_").lower().replace("_", "-")] = Path(value).expanduser().resolve()

    def pick(key: str, default: Path | None = None) -> Path | None:
        from_env = env.get(f"GAZE_{key.upper()}")
        return Path(from_env).expanduser().resolve() if from_env else (place(raw.get(key)) or default)

    return Settings(
        dataset=pick("dataset"),
        runs_dir=pick("runs_dir", Path("runs")),
        cache_dir=pick("cache_dir", Path(".cache")),
        tokenizer_cache_dir=pick("tokenizer_cache_dir"),
        recipes=pick("recipes"),
        models=models,
        metrics={k: (v if k == "clip_arch" and not v.endswith(".json") else place(v))
                 for k, v in raw.get("metrics", {}).items()},
        origin=str(path) if path.is_file() else "defaults",
        on=check_backend(env["GAZE_ON"], "GAZE_ON") if env.get("GAZE_ON") else raw.get("on", "local"),
        slurm=slurm_settings(raw.get("slurm", {}), f"{path}: [slurm]"),
        trackers=check_trackers(env["GAZE_TRACKERS"], "GAZE_TRACKERS") if env.get("GAZE_TRACKERS")
        else check_trackers(raw.get("trackers", ["tensorboard"]), f"{path}: trackers"),
    )


def dataset_for(settings: Settings, override: str | os.PathLike | None) -> Path:
    """The dataset folder given on the command line, else the settings' one (which must exist)."""
    if override:
        return Path(override).expanduser()
    if settings.dataset is None:
        raise DatasetError(
            "no dataset given: pass a folder (--dataset DIR), set GAZE_DATASET, or put "
            f'`dataset = "DIR"` in {settings.file}'
        )
    try:
        found = settings.dataset.is_dir()
    except OSError as exc:  # a path longer than the file system allows
        raise DatasetError(f"dataset folder {settings.dataset} (from {settings.origin}): {exc.strerror}") from None
    if not found:
        raise DatasetError(f"dataset folder {settings.dataset} (from {settings.origin}) does not exist")
    return settings.dataset


def model_for(settings: Settings, name: str, override: str | os.PathLike | None, *, wanted_by: str) -> Path:
    """The checkpoint called `name` in the settings (a family or a model name), or the override."""
    if override:
        return Path(override).expanduser()
    if name not in settings.models:
        known = f" (known: {', '.join(sorted(settings.models))})" if settings.models else ""
        raise GazeError(
            f"no checkpoint named {name!r} for {wanted_by}{known}: pass --model PATH, set "
            f'{_env_name(name)}, or add `{name} = "PATH"` under [models] in {settings.file}'
        )
    return settings.models[name]
