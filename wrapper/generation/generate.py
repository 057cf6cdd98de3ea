"""Generation sweeps with a trained LoRA: plan every image, render with gen_img.py, index, sheets.

A grid (sampler x steps x CFG x negative on/off x LoRA weight x base) is expanded over prompts, seeds
and checkpoints (of one run or several) into cells, one image each. The cells run as one gen_img.py
process per checkpoint, base and sampler, which pays model loading once for the rest of the grid.
Every prompt's CLIP tokens are counted, and gen_img.py is told to read as many 75-token chunks as the
longest needs. Each run read is locked (shared) while its LoRAs are in use, so none is trained meanwhile.
Output goes to a new folder `<run>/generations/<UTC stamp>-<6 hex>/`: images/, index.json,
jobs/ (the prompt files gen_img.py read), generate.log, sheets/ and generation.html.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from wrapper.errors import ConfigError, RunError, TrainExtraMissing
from wrapper.files import write_json
from wrapper.generation.checkpoints import Base, Source, find_sources, resolve_bases
from wrapper.generation.grid import Grid
from wrapper.generation.prompts import BUILTIN_PROMPTS, Prompt, prompt_id, read_prompts
from wrapper.kohya.gen_img import CHUNK_TOKENS, PRECISIONS, embeddings_multiples, gen_img_argv, prompt_line
from wrapper.kohya.prompt_lines import format_number
from wrapper.kohya.samplers import resolve_sampler
from wrapper.runs import layout as runs

SIZE_RANGE = (64, 2048)
DEFAULT_SIZE = {"sd15": 512, "sdxl": 1024}
CONFIRM_ABOVE = 100  # images; a bigger grid needs --yes
LOG_COLUMNS = "240"
OnLine = Callable[[str], None]


@dataclass(frozen=True)
class Cell:
    """One image: a source, the base it is rendered on, a prompt and one value of every grid axis."""

    source: Source
    base: Base
    prompt: Prompt
    sampler: str
    sd_sampler: str
    steps: int
    cfg: float
    negative: bool
    weight: float
    seed: int


@dataclass(frozen=True)
class Plan:
    """Everything one `gaze generate` call renders, checked before anything runs."""

    sources: tuple[Source, ...]
    prompts: tuple[Prompt, ...]
    prompt_file: Path
    grid: Grid
    seeds: tuple[int, ...]
    size: int
    precision: str
    cells: tuple[Cell, ...]
    tokens: Mapping[int, tuple[int, int]]  # prompt number -> CLIP tokens of (prompt, negative prompt)
    max_embeddings_multiples: int  # 75-token chunks gen_img.py reads per prompt: enough for the longest

    def token_lines(self) -> list[str]:
        """One line per prompt: its CLIP tokens and how gen_img.py reads them."""
        lines = []
        for p in self.prompts:
            tokens, negative = self.tokens[p.number]
            note = f", negative prompt {negative}" if p.negative and True in self.grid.negative else ""
            lines.append(f"{prompt_id(p)}: {tokens} CLIP tokens{note}")
        chunks = self.max_embeddings_multiples
        lines.append(f"gen_img.py reads {chunks} chunk(s) of {CHUNK_TOKENS} tokens per prompt "
                     f"(--max_embeddings_multiples {chunks}): every prompt whole")
        return lines


def count_prompt_tokens(prompts: Sequence[Prompt]) -> dict[int, tuple[int, int]]:
    """CLIP tokens of each prompt and its negative prompt, counted exactly and offline."""
    from wrapper.dataset.tokens import count_tokens

    return {p.number: (count_tokens(p.text).tokens, count_tokens(p.negative).tokens if p.negative else 0)
            for p in prompts}


def plan_generation(
    run_dirs: Sequence[Path],
    *,
    grid: Grid | None = None,
    prompts_path: Path | None = None,
    checkpoints: Sequence[str] = (),
    seeds: Sequence[int] = (1,),
    size: int | None = None,
    precision: str | None = None,
    prompt_numbers: Sequence[int] = (),
    models: Mapping[str, Path] | None = None,
) -> Plan:
    """Check every input and expand the grid into cells; nothing is run or written.

    `models` are the named checkpoints (gaze.toml [models]) a base= axis may name besides paths.
    """
    if not run_dirs:
        raise ConfigError("no run directory given; expected RUN_DIR, e.g. runs/sdxl-standard/<stamp>")
    grid = grid or Grid()
    sources = find_sources(run_dirs, checkpoints)
    prompt_file = Path(prompts_path) if prompts_path else BUILTIN_PROMPTS
    prompts = read_prompts(prompt_file)
    if prompt_numbers:
        bad = [n for n in prompt_numbers if not 1 <= n <= len(prompts)]
        if bad:
            raise ConfigError(
                f"option --prompt: {bad[0]} is not a prompt of {prompt_file}; expected 1 to {len(prompts)}"
            )
        prompts = [prompts[n - 1] for n in dict.fromkeys(prompt_numbers)]
    bare = [str(p.line) for p in prompts if not p.negative]
    if True in grid.negative and bare:
        raise ConfigError(
            f"{prompt_file}: line(s) {', '.join(bare)} have no negative prompt but the grid has negative=on; "
            "add a 'negative: ...' line above them, or use negative=off"
        )
    families = {s.family for s in sources}
    size = size or max(DEFAULT_SIZE[f] for f in families)
    if not (SIZE_RANGE[0] <= size <= SIZE_RANGE[1] and size % 64 == 0):
        raise ConfigError(
            f"option --size: {size} is not valid; expected a multiple of 64 from {SIZE_RANGE[0]} to {SIZE_RANGE[1]}"
        )
    # A full-size SDXL model in fp32 needs about twice the memory; bf16 also runs on CPUs.
    precision = precision or ("bf16" if "sdxl" in families else "fp32")
    if precision not in PRECISIONS:
        raise ConfigError(f"option --precision: {precision!r}; expected one of {', '.join(PRECISIONS)}")
    bases = resolve_bases(sources, grid.base, models or {})
    cells = expand(sources, prompts, grid, seeds, bases)
    tokens = count_prompt_tokens(prompts)
    longest = max(max(t, n if True in grid.negative else 0) for t, n in tokens.values())
    return Plan(tuple(sources), tuple(prompts), prompt_file, grid, tuple(seeds), size, precision, tuple(cells),
                tokens, embeddings_multiples(longest))


def expand(sources: Sequence[Source], prompts: Sequence[Prompt], grid: Grid, seeds: Sequence[int],
           bases: Mapping[Source, Sequence[Base]] | None = None) -> list[Cell]:
    """Every combination, sources outermost (then their bases) and seeds innermost."""
    from wrapper.generation.checkpoints import own_base

    cells = []
    for source in sources:
        axes = itertools.product(bases[source] if bases else [own_base(source)], prompts, grid.sampler,
                                 grid.negative, grid.steps, grid.cfg, grid.weight, seeds)
        cells += [Cell(source, base, prompt, sampler, resolve_sampler(sampler)[1], steps, cfg, negative, weight, seed)
                  for base, prompt, sampler, negative, steps, cfg, weight, seed in axes]
    return cells


def _slug(text: str) -> str:
    """File-name-safe text: letters, digits and . _ + - kept (dpm++2m, sdxl-standard+high-lr), others -> '-'."""
    out = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._+-") else "-" for ch in text)
    return "-".join(filter(None, out.split("-"))).lstrip(".") or "x"


def image_name(cell: Cell) -> str:
    """The image's path inside the generation folder; it holds every grid value, so names never clash."""
    parts = [
        prompt_id(cell.prompt),
        _slug(cell.sampler),
        f"s{cell.steps}",
        f"cfg{format_number(cell.cfg)}",
        "negon" if cell.negative else "negoff",
        f"w{format_number(cell.weight)}",
        f"seed{cell.seed}",
    ]
    folder = _slug(cell.source.label)
    if cell.base.mismatched:
        folder += f"-on-{_slug(cell.base.name)}"
    return f"images/{folder}/{'-'.join(parts)}.png"


#: One gen_img.py process: the source as it is rendered (its model: the cells' base), a sampler, the cells.
Job = tuple[Source, str, list[Cell]]


def jobs(cells: Sequence[Cell]) -> list[Job]:
    """One gen_img.py process per (source, base, sampler); lines ordered so that gen_img.py can batch them."""
    groups: dict[tuple[Source, Base, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.source, cell.base, cell.sampler), []).append(cell)
    order = lambda c: (c.weight, c.steps, c.cfg)  # noqa: E731  gen_img.py batches runs of equal settings
    return [(dataclasses.replace(source, model=base.model), sampler, sorted(group, key=order))
            for (source, base, sampler), group in groups.items()]


def job_label(job: Job) -> str:
    source, sampler, cells = job
    base = cells[0].base
    on = f" on {base.name} (mismatched base)" if base.mismatched else ""
    return f"{source.label}{on} x {sampler}"


def job_lines(cells: Sequence[Cell]) -> list[str]:
    """The gen_img.py prompt-file lines of one job, one image each."""
    return [
        prompt_line(
            c.prompt.text,
            c.prompt.negative if c.negative else None,
            steps=c.steps,
            cfg=c.cfg,
            seed=c.seed,
            weight=c.weight,
            filename=image_name(c),
        )
        for c in cells
    ]


def index_entry(cell: Cell, size: int) -> dict:
    """What index.json records for one image."""
    return {
        "file": image_name(cell),
        "prompt_id": prompt_id(cell.prompt),
        "prompt": cell.prompt.text,
        "negative_prompt": cell.prompt.negative if cell.negative else "",
        "negative": "on" if cell.negative else "off",
        "sampler": cell.sampler,
        "sd_scripts_sampler": cell.sd_sampler,
        "steps": cell.steps,
        "cfg": cell.cfg,
        "weight": cell.weight,
        "seed": cell.seed,
        "source": cell.source.label,
        "checkpoint": cell.source.checkpoint,
        "step": cell.source.step,
        "run": str(cell.source.run_dir),
        "lora": str(cell.source.lora),
        "base": cell.base.name,
        "base_model": str(cell.base.model),
        "mismatched": cell.base.mismatched,
        "width": size,
        "height": size,
    }


def build_index(plan: Plan, state: str, processes: Sequence[dict] = (), sheets: Sequence[dict] = ()) -> dict:
    """The whole index.json: the inputs, every planned image, the processes run and the sheets."""
    sources = [
        {
            "label": s.label,
            "run": str(s.run_dir),
            "checkpoint": s.checkpoint,
            "step": s.step,
            "lora": str(s.lora),
            "model": str(s.model),
            "family": s.family,
        }
        for s in plan.sources
    ]
    bases = [{"source": source.label, "base": base.name, "model": str(base.model), "mismatched": base.mismatched}
             for source, base in dict.fromkeys((c.source, c.base) for c in plan.cells)]
    return {
        "state": state,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "prompt_file": str(plan.prompt_file),
        "grid": plan.grid.as_dict(),
        "seeds": list(plan.seeds),
        "size": plan.size,
        "precision": plan.precision,
        "sources": sources,
        "bases": bases,
        "max_embeddings_multiples": plan.max_embeddings_multiples,
        "prompts": [{"id": prompt_id(p), "prompt": p.text, "negative_prompt": p.negative,
                     "tokens": plan.tokens[p.number][0], "negative_tokens": plan.tokens[p.number][1]}
                    for p in plan.prompts],
        "images": [index_entry(c, plan.size) for c in plan.cells],
        "processes": list(processes),
        "sheets": list(sheets),
    }


def check_count(plan: Plan, yes: bool, limit: int = CONFIRM_ABOVE) -> None:
    """Refuse a grid of more than `limit` images unless the user said yes."""
    if len(plan.cells) > limit and not yes:
        raise ConfigError(
            f"the grid makes {len(plan.cells)} images ({len(plan.sources)} checkpoint(s) x "
            f"{len(plan.prompts)} prompt(s) x {plan.grid.size} grid cell(s) x {len(plan.seeds)} seed(s)), "
            f"more than {limit}; "
            "pass --yes to render them all, or shrink the grid"
        )


def _bad_images(root: Path, cells: Sequence[Cell], size: int) -> list[str]:
    """Images of a finished job that are missing or have the wrong size."""
    from PIL import Image

    problems = []
    for cell in cells:
        path = root / image_name(cell)
        if not path.is_file():
            problems.append(f"{image_name(cell)} is missing")
            continue
        with Image.open(path) as image:
            if image.size != (size, size):
                problems.append(f"{image_name(cell)} is {image.size[0]}x{image.size[1]}, expected {size}x{size}")
    return problems


def _log_tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return "\n".join("    " + line for line in text[-lines:])


def job_argv(plan: Plan, source: Source, sampler: str, *, checkout: Path, prompts_file: Path, outdir: Path,
             batch_size: int = 1) -> list[str]:
    """The gen_img.py command line of one job (one checkpoint on one base x one sampler)."""
    from wrapper.kohya.checkout import trainer_python

    return gen_img_argv(
        python=trainer_python(), checkout=checkout, model=source.model, family=source.family, lora=source.lora,
        sampler=resolve_sampler(sampler)[1], prompts_file=prompts_file, outdir=outdir, size=plan.size,
        precision=plan.precision, tokenizer_cache_dir=source.tokenizer_cache_dir, batch_size=batch_size,
        max_embeddings_multiples=plan.max_embeddings_multiples)


def run_job(
    plan: Plan,
    root: Path,
    number: int,
    job: Job,
    *,
    checkout: Path,
    on_line: OnLine | None = None,
    batch_size: int = 1,
    keep_fds: Sequence[int] = (),
) -> dict:
    """Run one gen_img.py process for one job; its record has an 'error' message when it failed.

    `keep_fds` (the runs' shared locks) are inherited by gen_img.py, so they stay held while it reads.
    """
    from wrapper.kohya.checkout import trainer_env
    from wrapper.launch import run_streaming

    source, sampler, cells = job
    base = cells[0].base
    on = f"-on-{_slug(base.name)}" if base.mismatched else ""
    prompts_file = root / "jobs" / f"{number:02d}-{_slug(source.label)}{on}-{_slug(sampler)}.txt"
    prompts_file.parent.mkdir(exist_ok=True)
    prompts_file.write_text("\n".join(job_lines(cells)) + "\n", encoding="utf-8")
    for folder in {(root / image_name(c)).parent for c in cells}:
        folder.mkdir(parents=True, exist_ok=True)
    argv = job_argv(plan, source, sampler, checkout=checkout, prompts_file=prompts_file, outdir=root,
                    batch_size=batch_size)
    log = root / "generate.log"
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"\n=== gaze: job {number}: {job_label(job)}, {len(cells)} image(s)\n=== {argv}\n")
    # gen_img.py logs through rich, which wraps at 80 columns without a terminal: wide enough for a whole warning
    env = {**trainer_env(checkout), "COLUMNS": LOG_COLUMNS}
    result = run_streaming(argv, cwd=checkout, env=env, log_path=log, on_line=on_line, keep_fds=keep_fds)
    record = {
        "job": number,
        "source": source.label,
        "base": base.name,
        "sampler": sampler,
        "images": len(cells),
        "prompt_file": str(prompts_file.relative_to(root)),
        "argv": argv,
        "returncode": result.returncode,
        "duration_s": round(result.duration_s, 2),
        "s_per_image": round(result.duration_s / len(cells), 2),
    }
    if result.interrupted:
        record["error"] = f"interrupted during job {number} ({job_label(job)}); partial results in {root}"
        return record
    if result.returncode:
        _raise_missing_module(log, offset)
    bad = [] if result.returncode else _bad_images(root, cells, plan.size)
    if result.returncode or bad:
        what = f"exited with code {result.returncode}" if result.returncode else "did not write every image"
        details = "; ".join(bad[:5]) + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
        record["error"] = (
            f"gen_img.py {what} for {job_label(job)} (job {number})"
            f"{': ' + details if bad else ''}.\n"
            f"  last lines of {log}:\n{_log_tail(log)}"
        )
    return record


def _raise_missing_module(log: Path, offset: int) -> None:
    """gen_img.py died importing something: say what to install, not its traceback."""
    import re

    with open(log, encoding="utf-8", errors="replace") as handle:
        handle.seek(offset)
        match = re.search(r"ModuleNotFoundError: No module named '([^']+)'", handle.read())
    if match:
        raise TrainExtraMissing(f"gen_img.py cannot start: no module named {match[1]!r}; install the train extra "
                                "(`make setup-train`, or pip install -e '.[train]')")


def run_generation(
    plan: Plan,
    *,
    out_dir: Path | None = None,
    checkout: Path | None = None,
    on_line: OnLine | None = None,
    on_status: OnLine | None = None,
    rows: Sequence[str] = (),
    cols: Sequence[str] = (),
    thumb: int = 256,
    batch_size: int = 1,
) -> Path:
    """Render every cell of the plan into a new folder; write index.json, sheets and the page there.

    Every run read is locked (shared) first: a run being trained is refused, and a resume waits for us.
    """
    from wrapper.generation.sheets import sheet_axes, write_page, write_sheets
    from wrapper.kohya.checkout import find_checkout, require_train_extra

    checkout = find_checkout(checkout)
    require_train_extra()
    sheet_axes([index_entry(c, plan.size) for c in plan.cells], rows, cols)  # fail before rendering
    with ExitStack() as locks:
        fds = [locks.enter_context(runs.run_lock(run_dir, purpose="generation", shared=True))
               for run_dir in dict.fromkeys(s.run_dir for s in plan.sources)]
        root = _new_folder(plan, out_dir)
        status = on_status or (lambda _message: None)
        processes: list[dict] = []
        write_json(root / runs.GENERATION_INDEX, build_index(plan, "running"))
        all_jobs = jobs(plan.cells)
        try:
            for number, job in enumerate(all_jobs, start=1):
                status(f"job {number}/{len(all_jobs)}: {job_label(job)}, {len(job[2])} image(s)")
                record = run_job(plan, root, number, job, checkout=checkout, on_line=on_line, batch_size=batch_size,
                                 keep_fds=fds)
                processes.append(record)
                if "error" in record:
                    raise RunError(record["error"])
                write_json(root / runs.GENERATION_INDEX, build_index(plan, "running", processes))
        except BaseException:
            write_json(root / runs.GENERATION_INDEX, build_index(plan, "failed", processes))
            raise
    index = build_index(plan, "succeeded", processes)
    index["sheets"] = write_sheets(root, index, rows, cols, thumb)
    write_json(root / runs.GENERATION_INDEX, index)
    write_page(root, index)
    status(f"wrote {len(plan.cells)} images, {len(index['sheets'])} sheet(s) and {root / runs.GENERATION_PAGE}")
    return root


def _new_folder(plan: Plan, out_dir: Path | None) -> Path:
    if not out_dir:
        return runs.new_generation_dir(plan.sources[0].run_dir)
    root = Path(out_dir)
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"option --out: {root} is not empty; expected a new or empty folder (nothing is overwritten)")
    root.mkdir(parents=True, exist_ok=True)
    return root
