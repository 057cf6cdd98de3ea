"""A sweep's own folder: the one record of a queue or sweep of runs, whatever executes them.

<runs_dir>/sweeps/<UTC YYYYmmddTHHMMSSZ>-<6 hex>/
  sweep.json   the design (baseline, variants, seeds), the backend and its parallelism, every member
               (its spec and run folder) and the submission ids (the Slurm array job)
  slurm/       submitit's job files and task logs (Slurm only)

Each member's run folder is made up front, status "queued", in the usual place
(runs/<recipe>/<stamp>), and its placement.json names the sweep; the run folders stay the record of
each run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from wrapper.errors import RunError
from wrapper.files import write_json
from wrapper.recipe import Recipe
from wrapper.runs import layout as runs
from wrapper.runs.train import recipe_record

SWEEPS, SWEEP, SLURM_FOLDER = "sweeps", "sweep.json", "slurm"
Kind = Literal["queue", "sweep"]


@dataclass(frozen=True, kw_only=True)
class Member:
    spec: str
    run_dir: str
    seed: int | None = None  # its training seed (replicates of one spec differ only in it)
    job: str | None = None  # its Slurm array task ("<array>_<index>"), once submitted


@dataclass(frozen=True, kw_only=True)
class SweepRecord:
    """sweep.json."""

    kind: Kind = "queue"
    baseline: str | None = None  # a sweep's baseline; a queue has none
    variants: list[str] = field(default_factory=list)  # the modifiers of a sweep, the specs of a queue
    seeds: list[int] = field(default_factory=list)  # the seeds each variant runs with
    backend: runs.Backend = "local"
    parallel: int = 1  # runs at once (on Slurm, the job array's parallelism)
    gpus_per_run: int | None = None
    resources: dict[str, Any] = field(default_factory=dict)  # what each Slurm task asks for
    members: list[Member] = field(default_factory=list)
    submissions: list[str] = field(default_factory=list)  # Slurm job ids (the array's)
    created_at: str = ""

    def member_dirs(self) -> list[Path]:
        return [Path(m.run_dir) for m in self.members]


def new_queued_run(recipe: Recipe, runs_dir: Path, placement: runs.Placement | None = None) -> Path:
    """A run folder made before its run starts (status "queued"), so it can be watched from the start."""
    run_dir = runs.new_run_dir(runs_dir, recipe.name)
    runs.write_recipe_record(run_dir, recipe_record(recipe))
    if placement is not None:
        runs.write_placement(run_dir, placement)
    runs.write_status(run_dir, runs.Status("queued"))
    return run_dir


def is_sweep_dir(path: Path | str) -> bool:
    return (Path(path) / SWEEP).is_file()


def read_sweep(sweep_dir: Path | str) -> SweepRecord:
    """sweep.json, every key and member checked."""
    path = Path(sweep_dir) / SWEEP
    if not path.is_file():
        raise RunError(f"{sweep_dir} is not a sweep folder (no {SWEEP}); expected runs/{SWEEPS}/<stamp>/")
    data = runs.read_json(path)
    raw = data.get("members", []) if isinstance(data, dict) else []
    members = [_member(path, i, m) for i, m in enumerate(raw if isinstance(raw, list) else [None])]
    good, problems = runs.read_fields(path, SweepRecord)
    problems = [p for p in problems if not p.startswith(f"{path}: key 'members' ")]
    if problems:
        raise RunError(problems[0])
    return SweepRecord(**{**good, "members": members})


def _member(path: Path, i: int, member: Any) -> Member:
    keys = {"spec": str, "run_dir": str, "seed": (int, type(None)), "job": (str, type(None))}
    if not isinstance(member, dict) or not {"spec", "run_dir"} <= set(member) <= set(keys) \
            or not all(isinstance(v, keys[k]) and not isinstance(v, bool) for k, v in member.items()):
        raise RunError(f"{path}: members[{i}] is {member!r}; expected {{\"spec\": \"...\", \"run_dir\": \"...\", "
                       "\"seed\": an integer or null, \"job\": \"<array>_<task>\" or null}")
    return Member(**member)


def write_sweep(sweep_dir: Path, record: SweepRecord) -> None:
    write_json(Path(sweep_dir) / SWEEP, asdict(record))


def with_seeds(recipe: Recipe, seeds: Sequence[int]) -> list[Recipe]:
    """The recipe once per training seed; the prepared data (prep and validation seeds) stays the same."""
    return [recipe.replace(training=replace(recipe.training, seed=seed)) for seed in seeds]


def seeds_from(text: str, base: int) -> list[int]:
    """`--seeds 3` -> base, base+1, base+2; `--seeds 1,7,9` -> those seeds."""
    parts = [p.strip() for p in text.split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise RunError(f"--seeds {text!r}: expected a count (3) or a comma-separated list of seeds (1,7,9)") from None
    if len(parts) == 1:
        if not 1 <= numbers[0] <= 100:
            raise RunError(f"--seeds {text}: expected a count from 1 to 100 (or seeds, comma-separated: 1,7,9)")
        return [base + i for i in range(numbers[0])]
    if len(set(numbers)) != len(numbers) or any(not 0 <= n < 2**31 for n in numbers):
        raise RunError(f"--seeds {text}: expected distinct seeds from 0 to 2**31-1")
    return numbers


def member_label(member: Member, record: SweepRecord) -> str:
    """A member's name in tables: its spec, with its seed when the sweep has replicates."""
    return f"{member.spec} seed={member.seed}" if len(record.seeds) > 1 and member.seed is not None else member.spec


def sweep_of(run_dir: Path) -> Path | None:
    """The sweep folder a run belongs to (its placement names it), or None."""
    name = runs.read_placement(run_dir).sweep
    return Path(name) if name else None


def create_sweep(
    runs_dir: Path,
    members: Sequence[tuple[str, Recipe]],
    *,
    kind: Kind,
    backend: runs.Backend,
    parallel: int,
    baseline: str | None = None,
    variants: Sequence[str] = (),
    gpus_per_run: int | None = None,
    resources: dict[str, Any] | None = None,
) -> tuple[Path, SweepRecord]:
    """The sweep folder and a queued run folder for each (spec, recipe), before anything runs.

    Replicates are members with the same spec and different training seeds."""
    runs_dir = Path(runs_dir).resolve()
    sweep_dir = runs.new_stamped_dir(runs_dir / SWEEPS)
    placement = runs.Placement(backend=backend, sweep=str(sweep_dir))
    made = [Member(spec=spec, run_dir=str(new_queued_run(recipe, runs_dir, placement)), seed=recipe.training.seed)
            for spec, recipe in members]
    record = SweepRecord(
        kind=kind,
        baseline=baseline,
        variants=list(variants) or [spec for spec, _ in members],
        seeds=sorted({recipe.training.seed for _, recipe in members}),
        backend=backend,
        parallel=parallel,
        gpus_per_run=gpus_per_run,
        resources=dict(resources or {}),
        members=made,
        created_at=runs.utc_now(),
    )
    write_sweep(sweep_dir, record)
    return sweep_dir, record


def with_submission(sweep_dir: Path, submission: str, jobs: dict[str, str]) -> SweepRecord:
    """Record a Slurm submission in sweep.json: its id and each submitted member's task (by run folder)."""
    record = read_sweep(sweep_dir)
    members = [replace(m, job=jobs.get(m.run_dir, m.job)) for m in record.members]
    record = replace(record, submissions=[*record.submissions, submission], members=members)
    write_sweep(sweep_dir, record)
    return record
