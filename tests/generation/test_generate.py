"""Generation grids: parsing, expansion, naming, checkpoints, the index, the CLI and a faked gen_img.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from wrapper.cli import GazeGroup
from wrapper.cli.generate import generate, split_words
from wrapper.errors import ConfigError, RunError
from wrapper.generation.checkpoints import find_sources
from wrapper.generation.generate import (
    build_index,
    check_count,
    image_name,
    job_lines,
    jobs,
    plan_generation,
    run_generation,
)
from wrapper.generation.grid import Grid, parse_grid, parse_seeds
from wrapper.kohya.checkout import REQUIRED_FILES
from wrapper.kohya.gen_img import gen_img_argv
from wrapper.kohya.samplers import SD_SCRIPTS_SAMPLERS, resolve_sampler
from wrapper.runs.layout import list_checkpoints, new_generation_dir

pytestmark = pytest.mark.usefixtures("stand_in_trainer")  # stand-in scripts, not sd-scripts

PROMPTS = "negative: lowres, blurry\nfashion photo of a coat\nstudio portrait, grey backdrop\n"


def make_run(root: Path, recipe: str = "sd15-standard", *, steps=(2, 4), final=True, family="sd15") -> Path:
    """A finished run directory as `gaze run` leaves it, with dummy LoRA files."""
    run = root / "runs" / recipe / f"20250101T00000{len(list(root.glob('runs/*/*')))}Z-abc123"
    (run / "output").mkdir(parents=True)
    model = root / "model.safetensors"
    model.write_bytes(b"model")
    (run / "run.json").write_text(
        json.dumps(
            {
                "model": str(model),
                "tokenizer_cache_dir": None,
                "output_name": "lora",
                "family": family,
                "sd_scripts": "/x",
            }
        )
    )
    (run / "recipe.json").write_text(json.dumps({"name": recipe, "family": family}))
    (run / "status.json").write_text(json.dumps({"state": "succeeded"}))
    for step in steps:
        (run / "output" / f"lora-step{step:08d}.safetensors").write_bytes(b"lora")
    if final:
        (run / "output" / "lora.safetensors").write_bytes(b"lora")
    return run


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path)


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text(PROMPTS)
    return path


@pytest.fixture
def checkout(tmp_path):
    root = tmp_path / "sd-scripts"
    for name in REQUIRED_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


# ---------------------------------------------------------------- grid
def test_research_log_grid_has_72_cells_per_prompt_and_seed():
    grid = parse_grid(["sampler=dpm++2m,euler", "steps=10,20,40", "cfg=3,7,12", "negative=on,off", "weight=0.6,1.0"])
    assert grid == Grid(("dpm++2m", "euler"), (10, 20, 40), (3.0, 7.0, 12.0), (True, False), (0.6, 1.0))
    assert grid.size == 72


def test_defaults_are_the_research_log_settings():
    assert parse_grid([]) == Grid(("dpm++2m",), (20,), (7.0,), (True,), (1.0,))


@pytest.mark.parametrize(
    ("name", "friendly", "kohya"),
    [
        ("DPM++ 2M", "dpm++2m", "dpmsolver++"),
        ("Euler", "euler", "euler"),
        ("dpmsolver++", "dpm++2m", "dpmsolver++"),
        ("k_euler_a", "euler_a", "euler_a"),
        ("euler-a", "euler_a", "euler_a"),
        ("ddim", "ddim", "ddim"),
    ],
)
def test_sampler_names_map_exactly(name, friendly, kohya):
    assert resolve_sampler(name) == (friendly, kohya)


def test_every_friendly_sampler_is_a_gen_img_choice():
    from wrapper.kohya.samplers import FRIENDLY_SAMPLERS

    assert set(FRIENDLY_SAMPLERS.values()) <= set(SD_SCRIPTS_SAMPLERS)
    assert all(resolve_sampler(s)[1] in SD_SCRIPTS_SAMPLERS for s in SD_SCRIPTS_SAMPLERS)


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["sampler=DPM++ 2M Karras"], "unknown sampler 'DPM++ 2M Karras' (did you mean 'dpm++2m'?)"),
        (["sampler=dpm++2m_karras"], "gen_img.py has no Karras sigmas"),
        (["sampler=karras"], "unknown sampler"),
        (["steps=0"], "'0' is not valid (out of range; expected 1 to 1000)"),
        (["steps=ten"], "expected an integer"),
        (["steps=20.5"], "expected an integer"),
        (["cfg=0.5"], "out of range; expected 1 to 30"),
        (["cfg=nan"], "out of range"),
        (["cfg=40"], "out of range"),
        (["weight=3"], "expected -2 to 2"),
        (["negative=maybe"], "expected on or off"),
        (["stepz=20"], "unknown grid key 'stepz' (did you mean 'steps'?)"),
        (["steps"], "expected KEY=VALUE"),
        (["steps=1", "steps=2"], "given twice"),
        (["cfg=7,7.0"], "listed twice"),
    ],
)
def test_bad_grid_words(words, message):
    with pytest.raises(ConfigError) as info:
        parse_grid(words)
    assert message in str(info.value)


def test_all_grid_problems_are_reported_together():
    with pytest.raises(ConfigError) as info:
        parse_grid(["steps=0", "cfg=99", "sampler=nope"])
    assert str(info.value).count("\n  - ") == 3


def test_seeds():
    assert parse_seeds("1,2,30") == (1, 2, 30)
    for bad in ("1,1", "-1", "x", str(2**32)):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


# ---------------------------------------------------------------- checkpoints
def test_checkpoints_are_listed_in_step_order(tmp_path):
    run = make_run(tmp_path, steps=(10, 2, 4))
    (run / "output" / "notes.txt").write_text("x")
    assert list(list_checkpoints(run, "lora")) == ["step2", "step4", "step10", "final"]


@pytest.mark.parametrize(
    ("specs", "names"),
    [
        ((), ["final"]),
        (("4",), ["step4"]),
        (("step2", "final"), ["step2", "final"]),
        (("all",), ["step2", "step4", "final"]),
        (("lora-step00000002.safetensors",), ["step2"]),
        (("last", "final"), ["final"]),
    ],
)
def test_checkpoint_specs(run_dir, specs, names):
    assert [s.checkpoint for s in find_sources([run_dir], specs)] == names


def test_missing_checkpoint_lists_what_exists(run_dir):
    with pytest.raises(RunError, match=r"no checkpoint '3'.*expected one of step2, step4, final or 'all'"):
        find_sources([run_dir], ["3"])


def test_run_without_any_lora(tmp_path):
    run = make_run(tmp_path, steps=(), final=False)
    with pytest.raises(RunError, match="has no LoRA file"):
        find_sources([run], [])


def test_not_a_run_directory(tmp_path):
    with pytest.raises(RunError, match="no run.json"):
        find_sources([tmp_path], [])


def test_missing_base_model(run_dir):
    Path(json.loads((run_dir / "run.json").read_text())["model"]).unlink()
    with pytest.raises(RunError, match="key 'model'.*does not exist"):
        find_sources([run_dir], [])


def test_several_runs_are_labelled_by_recipe(tmp_path):
    a, b = make_run(tmp_path, "sdxl-standard"), make_run(tmp_path, "sdxl-standard+high-lr")
    assert [s.label for s in find_sources([a, b, a], [])] == [
        "sdxl-standard final",
        "sdxl-standard+high-lr final",
    ]


# ---------------------------------------------------------------- plan, names, lines, argv
def test_plan_expands_and_names_every_image_uniquely(run_dir, prompts):
    grid = parse_grid(["sampler=dpm++2m,euler", "steps=2,4", "cfg=3,7", "negative=on,off", "weight=0.6,1"])
    plan = plan_generation([run_dir], grid=grid, prompts_path=prompts, checkpoints=["all"], seeds=(1, 2), size=128)
    assert len(plan.cells) == 3 * 2 * 32 * 2
    names = [image_name(c) for c in plan.cells]
    assert len(set(names)) == len(names)
    assert names[0] == "images/step2/p01-dpm++2m-s2-cfg3-negon-w0.6-seed1.png"
    assert len(jobs(plan.cells)) == 3 * 2  # one process per checkpoint and sampler


def test_job_lines_carry_every_per_image_setting(run_dir, prompts):
    grid = parse_grid(["negative=on,off", "cfg=7.5", "weight=0.6"])
    plan = plan_generation([run_dir], grid=grid, prompts_path=prompts, seeds=(5,), size=128)
    ((source, sampler, cells),) = jobs(plan.cells)
    lines = job_lines(cells)
    assert lines[0] == (
        "fashion photo of a coat --n lowres, blurry --s 20 --l 7.5 --d 5 --am 0.6 "
        "--f images/final/p01-dpm++2m-s20-cfg7.5-negon-w0.6-seed5.png"
    )
    assert "--n" not in lines[1] and "negoff" in lines[1]


def test_gen_img_argv_sdxl(tmp_path):
    argv = gen_img_argv(
        python="py",
        checkout=tmp_path,
        model=Path("/m"),
        family="sdxl",
        lora=Path("/l.safetensors"),
        sampler="dpmsolver++",
        prompts_file=Path("/p.txt"),
        outdir=Path("/o"),
        size=128,
        precision="bf16",
        tokenizer_cache_dir=Path("/tok"),
    )
    assert argv[:3] == ["py", str(tmp_path / "gen_img.py"), "--sdxl"]
    joined = " ".join(argv)
    for part in (
        "--ckpt /m",
        "--sampler dpmsolver++",
        "--W 128 --H 128",
        "--network_module networks.lora",
        "--network_weights /l.safetensors",
        "--bf16 --no_half_vae",
        "--tokenizer_cache_dir /tok",
    ):
        assert part in joined
    with pytest.raises(ConfigError):
        gen_img_argv(
            **{
                **dict(python="py", checkout=tmp_path, model=Path("/m"), family="sd15", lora=Path("/l")),
                "sampler": "karras",
                "prompts_file": Path("/p"),
                "outdir": Path("/o"),
                "size": 64,
            }
        )


def test_negative_on_needs_a_negative_prompt(run_dir, tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("no negative here\n")
    with pytest.raises(ConfigError, match=r"line\(s\) 1 have no negative prompt"):
        plan_generation([run_dir], grid=parse_grid([]), prompts_path=path)
    assert plan_generation([run_dir], grid=parse_grid(["negative=off"]), prompts_path=path).cells


@pytest.mark.parametrize("size", [100, 32, 4096])
def test_bad_size(run_dir, prompts, size):
    with pytest.raises(ConfigError, match="--size"):
        plan_generation([run_dir], prompts_path=prompts, size=size)


def test_default_size_and_precision_follow_the_family(tmp_path, prompts):
    plan = plan_generation([make_run(tmp_path, family="sdxl")], prompts_path=prompts)
    assert (plan.size, plan.precision) == (1024, "bf16")


def test_big_grid_needs_yes(run_dir, prompts):
    grid = parse_grid(["steps=1,2,3,4,5,6", "cfg=1,2,3,4,5"])
    plan = plan_generation([run_dir], grid=grid, prompts_path=prompts, seeds=(1, 2))
    with pytest.raises(ConfigError, match="makes 120 images.*more than 100.*--yes"):
        check_count(plan, yes=False)
    check_count(plan, yes=True)


def test_index_records_every_image(run_dir, prompts):
    plan = plan_generation([run_dir], grid=parse_grid(["negative=on,off"]), prompts_path=prompts, size=128)
    index = json.loads(json.dumps(build_index(plan, "running")))
    assert len(index["images"]) == 4
    first = index["images"][0]
    assert {
        k: first[k]
        for k in (
            "prompt",
            "negative_prompt",
            "sampler",
            "sd_scripts_sampler",
            "steps",
            "cfg",
            "weight",
            "seed",
            "checkpoint",
            "width",
        )
    } == {
        "prompt": "fashion photo of a coat",
        "negative_prompt": "lowres, blurry",
        "sampler": "dpm++2m",
        "sd_scripts_sampler": "dpmsolver++",
        "steps": 20,
        "cfg": 7.0,
        "weight": 1.0,
        "seed": 1,
        "checkpoint": "final",
        "width": 128,
    }
    assert index["images"][1]["negative_prompt"] == "" and index["images"][1]["negative"] == "off"


def test_generation_folders_are_new_every_time(run_dir):
    a, b = new_generation_dir(run_dir), new_generation_dir(run_dir)
    assert a != b and a.parent == b.parent == run_dir / "generations"


# ---------------------------------------------------------------- orchestration with a faked gen_img.py
def fake_gen_img(fail_on: str | None = None, returncode: int = 0, size_override: int | None = None):
    """Stands in for run_streaming: writes each --f image the way gen_img.py would, records the argv."""
    calls = []

    def run(argv, *, cwd, env, log_path, on_line=None, grace_s=20.0, keep_fds=()):
        from wrapper.launch import ProcessResult

        calls.append(list(argv))
        opts = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
        size = size_override or int(opts["--W"])
        for line in Path(opts["--from_file"]).read_text().splitlines():
            name = line.split(" --f ")[1]
            if fail_on and fail_on in name:
                continue
            Image.new("RGB", (size, size), (len(line) % 255, 80, 160)).save(Path(opts["--outdir"]) / name)
        with open(log_path, "a") as log:
            log.write("fake gen_img done\n")
        if on_line:
            on_line("fake gen_img done")
        return ProcessResult(returncode, False, 0.5)

    run.calls = calls
    return run


def test_run_generation_writes_images_index_sheets_and_page(run_dir, prompts, checkout, monkeypatch):
    fake = fake_gen_img()
    monkeypatch.setattr("wrapper.launch.run_streaming", fake)
    grid = parse_grid(["sampler=euler,dpm++2m", "cfg=3,7", "negative=on,off", "steps=2"])
    plan = plan_generation([run_dir], grid=grid, prompts_path=prompts, checkpoints=["step2", "final"], size=64)
    root = run_generation(plan, checkout=checkout)
    assert root.parent == run_dir / "generations"
    assert len(fake.calls) == 4  # 2 checkpoints x 2 samplers
    index = json.loads((root / "index.json").read_text())
    assert index["state"] == "succeeded" and len(index["images"]) == 2 * 2 * 8
    assert all((root / e["file"]).is_file() for e in index["images"])
    assert [s["file"] for s in index["sheets"]] == ["sheets/p01.png", "sheets/p02.png"]
    assert index["sheets"][0]["rows"] == ["cfg"] and index["sheets"][0]["cols"] == [
        "sampler",
        "negative",
        "source",
    ]
    assert (index["sheets"][0]["row_count"], index["sheets"][0]["col_count"]) == (2, 8)
    assert len(index["processes"]) == 4 and index["processes"][0]["images"] == 8
    page = (root / "generation.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "fashion photo of a coat" in page
    assert (root / "jobs").is_dir() and (root / "generate.log").read_text().count("=== gaze: job") == 4


def test_failed_process_reports_the_log_and_keeps_the_index(run_dir, prompts, checkout, monkeypatch):
    monkeypatch.setattr("wrapper.launch.run_streaming", fake_gen_img(returncode=1))
    plan = plan_generation([run_dir], prompts_path=prompts, size=64)
    with pytest.raises(RunError, match=r"exited with code 1 for final x dpm\+\+2m(.|\n)*fake gen_img done"):
        run_generation(plan, checkout=checkout)
    (root,) = (run_dir / "generations").iterdir()
    index = json.loads((root / "index.json").read_text())
    assert index["state"] == "failed" and index["processes"][0]["returncode"] == 1
    assert "exited with code 1" in index["processes"][0]["error"]


def test_missing_or_wrong_size_images_are_failures(run_dir, prompts, checkout, monkeypatch):
    monkeypatch.setattr("wrapper.launch.run_streaming", fake_gen_img(fail_on="p02"))
    plan = plan_generation([run_dir], prompts_path=prompts, size=64)
    with pytest.raises(RunError, match=r"p02-dpm\+\+2m-s20-cfg7-negon-w1-seed1.png is missing"):
        run_generation(plan, checkout=checkout)
    monkeypatch.setattr("wrapper.launch.run_streaming", fake_gen_img(size_override=32))
    with pytest.raises(RunError, match="is 32x32, expected 64x64"):
        run_generation(plan, checkout=checkout)


def test_out_folder_is_never_overwritten(run_dir, prompts, checkout, tmp_path, monkeypatch):
    monkeypatch.setattr("wrapper.launch.run_streaming", fake_gen_img())
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    plan = plan_generation([run_dir], prompts_path=prompts, size=64)
    with pytest.raises(ConfigError, match="not empty"):
        run_generation(plan, out_dir=out, checkout=checkout)


# ---------------------------------------------------------------- CLI
def cli(*args: str):
    return CliRunner().invoke(GazeGroup(commands=[generate]), ["generate", *args])


def test_split_words(run_dir):
    assert split_words((str(run_dir), "steps=1,2", "cfg=3")) == ([run_dir], ["steps=1,2", "cfg=3"])


def test_cli_renders_a_grid_with_positional_grid_words(run_dir, prompts, checkout, monkeypatch):
    monkeypatch.setattr("wrapper.launch.run_streaming", fake_gen_img())
    words = f"{run_dir} --checkpoint step4 --prompts {prompts} --grid sampler=dpm++2m,euler steps=2,4 cfg=3,7"
    words += f" negative=on,off --size 64 --seeds 1 --sd-scripts {checkout} --prompt 2"
    result = cli(*words.split())
    assert result.exit_code == 0, result.output
    assert "16 image(s)" in result.output and "2 gen_img.py process(es)" in result.output
    (root,) = (run_dir / "generations").iterdir()
    index = json.loads((root / "index.json").read_text())
    assert {e["file"].rsplit("/", 1)[0] for e in index["images"]} == {"images/step4"}
    assert all(Path(e["file"]).name.startswith("p02-") for e in index["images"])  # numbered as in the file
    assert f"page: {root / 'generation.html'}" in result.output


def test_cli_dry_run_prints_the_commands(run_dir, prompts, checkout):
    result = cli(str(run_dir), "--prompts", str(prompts), "sampler=euler", "--dry-run", "--sd-scripts", str(checkout))
    assert result.exit_code == 0, result.output
    assert "gen_img.py --v1" in result.output and "--sampler euler" in result.output
    assert "--n lowres, blurry --s 20 --l 7 --d 1 --am 1 --f images/final/" in result.output
    assert not (run_dir / "generations").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sampler=foo"], "unknown sampler 'foo'"),
        (["steps=5000"], "out of range"),
        (["--checkpoint", "999"], "no checkpoint '999'"),
        (["steps=1,2,3,4,5,6,7,8,9,10,11", "cfg=1,2,3,4,5"], "more than 100"),
        (["--rows", "stepz"], "unknown sheet axis 'stepz' (did you mean 'steps'?)"),
    ],
)
def test_cli_bad_input_is_one_clear_line(run_dir, prompts, checkout, args, message):
    result = cli(str(run_dir), "--prompts", str(prompts), "--sd-scripts", str(checkout), *args)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_cli_bad_prompt_file_shows_line_and_column(run_dir, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("negative: x\nfine prompt\nbroken --s 20\n")
    result = cli(str(run_dir), "--prompts", str(bad))
    assert result.exit_code == 1 and f"{bad}:3:8: the prompt contains the option '--s'" in result.output


def test_cli_run_without_lora(tmp_path):
    result = cli(str(make_run(tmp_path, steps=(), final=False)))
    assert result.exit_code == 1 and "has no LoRA file" in result.output


def test_cli_has_help_with_an_example():
    result = CliRunner().invoke(generate, ["--help"])
    assert result.exit_code == 0 and "Example: gaze generate" in result.output


# ---------------------------------------------------------------- long prompts, bases, the glitch preset, locks
LONG = "negative: blurry\n" + "a long editorial photograph of a tailored wool coat, " * 12 + "\nshort prompt\n"


def family_run(tmp_path: Path, family: str = "sd15") -> Path:
    """A run whose base model is a checkpoint gaze can identify (header only)."""
    from conftest import write_checkpoint

    run = make_run(tmp_path, family=family)
    write_checkpoint(tmp_path / "model.safetensors", family)
    return run


@pytest.fixture
def named(tmp_path) -> dict[str, Path]:
    from conftest import write_checkpoint

    return {"other": write_checkpoint(tmp_path / "other.safetensors", "sd15"),
            "xl": write_checkpoint(tmp_path / "xl.safetensors", "sdxl")}


def test_long_prompts_are_counted_and_read_whole(run_dir, tmp_path):
    path = tmp_path / "long.txt"
    path.write_text(LONG)
    plan = plan_generation([run_dir], prompts_path=path, size=64)
    assert plan.tokens[1][0] > 75 and plan.tokens[2][0] < 10
    assert plan.max_embeddings_multiples == -(-plan.tokens[1][0] // 75) >= 2
    ((source, sampler, _),) = jobs(plan.cells)
    from wrapper.generation.generate import job_argv

    argv = job_argv(plan, source, sampler, checkout=Path("/sd"), prompts_file=Path("/p"), outdir=Path("/o"))
    assert argv[argv.index("--max_embeddings_multiples") + 1] == str(plan.max_embeddings_multiples)
    assert f"p01: {plan.tokens[1][0]} CLIP tokens, negative prompt 1" in plan.token_lines()[0]
    index = build_index(plan, "running")
    assert index["max_embeddings_multiples"] == plan.max_embeddings_multiples
    assert index["prompts"][0]["tokens"] == plan.tokens[1][0]


def test_a_base_axis_renders_the_lora_on_another_checkpoint_labelled_mismatched(tmp_path, prompts, named):
    run = family_run(tmp_path)
    plan = plan_generation([run], grid=parse_grid(["base=default,other"]), prompts_path=prompts, size=64,
                           models=named)
    assert len(jobs(plan.cells)) == 2  # the model loads once per base
    entries = build_index(plan, "running")["images"]
    assert {(e["base"], e["mismatched"]) for e in entries} == {("default", False), ("other", True)}
    assert {e["base_model"] for e in entries if e["mismatched"]} == {str(named["other"])}
    names = [image_name(c) for c in plan.cells]
    assert len(set(names)) == len(names) and any(n.startswith("images/final-on-other/") for n in names)


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("xl", "sd-scripts cannot apply an SD1.x LoRA to an SDXL base"),
        ("nope", "no checkpoint named 'nope' in gaze.toml [models] (known: other, xl)"),
        ("MODEL", "the checkpoint final was trained on; use base=default"),
    ],
)
def test_bases_that_cannot_work_are_refused_before_anything_starts(tmp_path, prompts, named, base, message):
    run = family_run(tmp_path)
    base = str(tmp_path / "model.safetensors") if base == "MODEL" else base
    with pytest.raises(ConfigError) as info:
        plan_generation([run], grid=parse_grid([f"base={base}"]), prompts_path=prompts, models=named)
    assert message in str(info.value)


def test_cli_base_option_and_sheets_label_the_mismatch(tmp_path, prompts, named, checkout, monkeypatch):
    run = family_run(tmp_path)
    monkeypatch.setenv("GAZE_MODEL_OTHER", str(named["other"]))
    result = cli(str(run), "--prompts", str(prompts), "--base", "other", "--dry-run", "--sd-scripts", str(checkout))
    assert result.exit_code == 0, result.output
    assert f"--ckpt {named['other']}" in result.output and "on other (mismatched base)" in result.output
    clash = cli(str(run), "--prompts", str(prompts), "--base", "other", "base=default")
    assert clash.exit_code == 1 and "either as --base or as a base= grid axis" in clash.output
    monkeypatch.setattr("wrapper.launch.run_streaming", fake_gen_img())
    plan = plan_generation([run], grid=parse_grid(["base=default,other"]), prompts_path=prompts, size=64,
                           models=named)
    root = run_generation(plan, checkout=checkout)
    index = json.loads((root / "index.json").read_text())
    assert index["sheets"][0]["cols"] == ["base"]
    assert "Deliberately mismatched bases" in (root / "generation.html").read_text()


def test_the_glitch_preset_is_shown_by_dry_run(run_dir, checkout):
    result = cli(str(run_dir), "--glitch", "--dry-run", "--sd-scripts", str(checkout))
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("the research log's generation-glitch preset: 200 image(s)")
    assert "sampler: dpm++2m, euler" in out and "steps: 3, 8, 20, 50, 150" in out and "negative: off, on" in out
    assert "p01: 220 CLIP tokens, negative prompt 37" in out and "p02: 129 CLIP tokens" in out
    assert "--max_embeddings_multiples 3" in out
    narrowed = cli(str(run_dir), "--glitch", "steps=4", "--dry-run", "--sd-scripts", str(checkout))
    assert "40 image(s)" in narrowed.output  # a grid word replaces that axis of the preset
    assert "more than 100" in cli(str(run_dir), "--glitch", "--sd-scripts", str(checkout)).output


def test_a_run_being_trained_is_refused_and_readers_share_the_lock(run_dir, prompts, checkout, monkeypatch):
    from wrapper.runs import layout as runs

    plan = plan_generation([run_dir], prompts_path=prompts, size=64)
    with runs.run_lock(run_dir, purpose="training"), pytest.raises(RunError, match="is in use by pid"):
        run_generation(plan, checkout=checkout)
    fake = fake_gen_img()

    def while_reading(argv, **kwargs):
        with pytest.raises(RunError, match="in use by"), runs.run_lock(run_dir, purpose="training (resumed)"):
            pass  # a resume waits while the LoRAs are read
        with runs.run_lock(run_dir, purpose="generation", shared=True):
            pass  # another generation may read them too
        assert kwargs["keep_fds"], "gen_img.py inherits the lock"
        return fake(argv, **kwargs)

    monkeypatch.setattr("wrapper.launch.run_streaming", while_reading)
    run_generation(plan, checkout=checkout)


def test_a_missing_train_extra_is_named_not_a_traceback(run_dir, prompts, checkout, monkeypatch):
    from wrapper.errors import TrainExtraMissing

    monkeypatch.setattr("wrapper.kohya.checkout.missing_train_extra",
                        lambda: TrainExtraMissing("install the train extra (`make setup-train`)"))
    result = cli(str(run_dir), "--prompts", str(prompts), "--sd-scripts", str(checkout))
    assert result.exit_code == 1 and "install the train extra (`make setup-train`)" in result.output
    monkeypatch.undo()

    def crashing(argv, *, log_path, **kwargs):
        from wrapper.launch import ProcessResult

        with open(log_path, "a") as log:
            log.write("Traceback...\nModuleNotFoundError: No module named 'cv2'\n")
        return ProcessResult(1, False, 0.1)

    monkeypatch.setattr("wrapper.launch.run_streaming", crashing)
    with pytest.raises(TrainExtraMissing, match="no module named 'cv2'; install the train extra"):
        run_generation(plan_generation([run_dir], prompts_path=prompts, size=64), checkout=checkout)
