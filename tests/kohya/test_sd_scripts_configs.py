"""Rendered configs against the real sd-scripts checkout: its parser, its dataset schema, its readers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from recipes import builtin_registry
from recipes.glitches import MODIFIERS
from wrapper.kohya import configs, interface
from wrapper.kohya.checkout import trainer_env
from wrapper.kohya.render import Places
from wrapper.launch import run_captured
from wrapper.recipe import SamplePrompt, evolve

pytestmark = pytest.mark.sd_scripts
registry = builtin_registry()
SPECS = [*registry.recipes] + [f"{base}+{m.name}" for base in registry.recipes for m in MODIFIERS]

READER = r"""
import json, sys
import train_network, sdxl_train_network
from library import train_util
jobs_file, out_file = sys.argv[1:3]
out = {}
for item in json.loads(open(jobs_file).read()):
    sys.argv = ["train", "--config_file", item["config"]]  # read_config_from_file re-parses sys.argv
    module = sdxl_train_network if item["script"].startswith("sdxl") else train_network
    parser = module.setup_parser()
    args = parser.parse_args()
    args = train_util.read_config_from_file(args, parser)
    prompts = train_util.load_prompts(item["prompts"])
    plain = (str, int, float, bool, list, type(None))
    keys = ("prompt", "negative_prompt", "width", "height", "seed", "scale", "sample_steps", "sample_sampler")
    out[item["config"]] = {"args": {k: v for k, v in vars(args).items() if isinstance(v, plain)},
                           "prompts": [{k: p.get(k) for k in keys} for p in prompts]}
json.dump(out, open(out_file, "w"))
"""


def _places(root: Path) -> Places:
    return Places(image_dir=root / "images", model=root / "m.safetensors", output_dir=root / "out",
                  logging_dir=root / "logs", sample_prompts=root / "sample_prompts.txt", output_name="lora")


def test_committed_table_matches_the_checkout(sd_scripts_dir: Path):
    live = interface.generate_table(sd_scripts_dir)
    committed = interface.committed_interface()
    assert live["scripts"] == committed["scripts"], "regenerate: python -m wrapper.kohya.interface"
    assert live["dataset_schema"] == committed["dataset_schema"]


def test_every_recipe_and_modifier_is_accepted_by_sd_scripts(sd_scripts_dir: Path, tmp_path: Path):
    rendered = {}
    for i, spec in enumerate(SPECS):
        root = tmp_path / str(i)
        rendered[spec] = configs.render(registry.resolve(spec), _places(root), root)
        for name, text in rendered[spec].texts().items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text, encoding="utf-8")
    datasets = [tmp_path / str(i) / "dataset.toml" for i in range(len(SPECS))]
    facts, verdicts = interface.ask_checkout(sd_scripts_dir, datasets)
    assert all(errors == [] for errors in verdicts.values()), verdicts
    for spec, r in rendered.items():
        parser = facts["scripts"][r.script]
        assert interface.argument_problems(interface.flatten(r.arguments), parser, spec) == []


def test_sd_scripts_reads_back_exactly_what_was_meant(sd_scripts_dir: Path, tmp_path: Path):
    odd = 'coat "oversized" \\ wool, ü€ 😀 #1 [draft]--x -'
    prompts = (SamplePrompt(prompt=odd, negative="blurry, \"text\" \\ n", seed=3),
               SamplePrompt(prompt="plain", negative=""))
    jobs, expected = [], {}
    for i, spec in enumerate(["sd15-standard+caption-dropout", "sdxl-standard+train-text-encoder+crop-flip"]):
        root = tmp_path / f"odd dir 'x' \"{i}\" ü"
        recipe = evolve(registry.resolve(spec), sampling={"prompts": prompts})
        r = configs.render(recipe, _places(root), root)
        for name, text in r.texts().items():
            root.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text, encoding="utf-8")
        jobs.append({"script": r.script, "config": str(root / "config.toml"),
                     "prompts": str(root / "sample_prompts.txt")})
        expected[str(root / "config.toml")] = (interface.flatten(r.arguments), recipe)
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    (tmp_path / "reader.py").write_text(READER)
    done = run_captured([sys.executable, str(tmp_path / "reader.py"), str(tmp_path / "jobs.json"),
                         str(tmp_path / "out.json")], cwd=sd_scripts_dir, env=trainer_env(sd_scripts_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())
    for config, (flat, recipe) in expected.items():
        args = result[config]["args"]
        for key, value in flat.items():
            assert args[key] == value, key
        read = result[config]["prompts"]
        assert [p["prompt"] for p in read] == [odd, "plain"]
        assert read[0]["negative_prompt"] == 'blurry, "text" \\ n' and read[1]["negative_prompt"] is None
        assert read[0]["seed"] == 3 and read[0]["scale"] == 7.0 and read[0]["sample_steps"] == 20
        assert read[0]["sample_sampler"] == "dpmsolver++"
        assert (read[0]["width"], read[0]["height"]) == recipe.data.resolution


def test_the_trainer_reads_the_logs_prompts_exactly(sd_scripts_dir: Path, tmp_path: Path):
    """The baselines' sample prompts are the research log's, a space at the end of each included: the
    checkout's own load_prompts reads them back unchanged (options follow the prompt in every line)."""
    jobs, recipes = [], {}
    for spec in ("sd15-standard", "sdxl-standard"):
        root = tmp_path / spec
        recipe = registry.resolve(spec)
        r = configs.render(recipe, _places(root), root)
        root.mkdir()
        for name, text in r.texts().items():
            (root / name).write_text(text, encoding="utf-8")
        jobs.append({"script": r.script, "config": str(root / "config.toml"),
                     "prompts": str(root / "sample_prompts.txt")})
        recipes[str(root / "config.toml")] = recipe
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    (tmp_path / "reader.py").write_text(READER)
    done = run_captured([sys.executable, str(tmp_path / "reader.py"), str(tmp_path / "jobs.json"),
                         str(tmp_path / "out.json")], cwd=sd_scripts_dir, env=trainer_env(sd_scripts_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    for config, read in json.loads((tmp_path / "out.json").read_text()).items():
        expected = [(p.prompt, p.negative or None) for p in recipes[config].sampling.prompts]
        assert [(p["prompt"], p["negative_prompt"]) for p in read["prompts"]] == expected
        assert read["prompts"][0]["prompt"].endswith("Eurocentric ideals. ")
