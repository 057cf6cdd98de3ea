"""sd-scripts' argument and dataset-config facts, and checking configs against them.

The facts come from a real checkout when one is available (its own argparse parser and dataset
schema, asked in a child process by wrapper.kohya.probe), else from the committed table
`sd_scripts_args.json`, generated from the pinned tag by `make args-table` (`python -m wrapper.kohya.interface`).
"""

from __future__ import annotations

import json
import re
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from wrapper.errors import ConfigError, TrainExtraMissing, did_you_mean

TABLE = Path(__file__).with_name("sd_scripts_args.json")
# Arguments that are the launcher's business, never a config file's.
COMMAND_LINE_ONLY = {"config_file", "output_config"}


def committed_interface() -> dict[str, Any]:
    return json.loads(TABLE.read_text(encoding="utf-8"))


@cache
def live_interface(checkout: Path) -> dict[str, Any]:
    """Ask the checkout itself (in a child process) for its parsers and dataset schema."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "interface.json"
        _probe(checkout, ["interface", str(out)])
        return json.loads(out.read_text(encoding="utf-8"))


def ask_checkout(checkout: Path, dataset_tomls: list[Path], *, masked_loss: bool = False,
                 ) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The checkout's interface and its own ConfigSanitizer's errors per dataset file, in one child."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "verdict.json"
        _probe(checkout, ["check", *(["--masked-loss"] if masked_loss else []), *map(str, dataset_tomls), str(out)])
        result = json.loads(out.read_text(encoding="utf-8"))
    return result, result.pop("dataset_errors")


def preflight(checkout: Path, dataset_toml: Path) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """Interface, dataset-schema errors and the trainer's device, from one child process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "preflight.json"
        _probe(checkout, ["preflight", str(dataset_toml), str(out)])
        result = json.loads(out.read_text(encoding="utf-8"))
    return result, result.pop("dataset_errors")[str(dataset_toml)], result.pop("device")


def _probe(checkout: Path, args: list[str]) -> None:
    from wrapper.kohya.checkout import PROJECT_ROOT, require_train_extra, trainer_env, trainer_python
    from wrapper.launch import run_captured

    require_train_extra()
    env = trainer_env(checkout)
    env["PYTHONPATH"] = f"{env['PYTHONPATH']}:{PROJECT_ROOT}"
    done = run_captured([trainer_python(), "-m", "wrapper.kohya.probe", *args], cwd=checkout, env=env)
    if done.returncode != 0:
        if match := re.search(r"ModuleNotFoundError: No module named '([^']+)'", done.stderr):
            raise TrainExtraMissing(f"sd-scripts at {checkout} cannot start: no module named {match[1]!r}; install "
                                    "the train extra with `make setup-train` (pip install -e '.[train]')")
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ConfigError(f"could not ask sd-scripts at {checkout} about its interface:\n{tail}")


# --- training arguments -------------------------------------------------------------------


def _type_ok(value: Any, type_name: str | None) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if type_name in (None, "str", "Path"):
        return isinstance(value, str)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "float":
        return number
    if type_name == "int_or_float":  # int steps, or a float < 1 meaning a fraction of all steps
        return number and (isinstance(value, int) or value < 1)
    return True  # a custom parser function: leave it to sd-scripts


def _expected(fact: dict[str, Any]) -> str:
    if fact["kind"] in ("storetrue", "storefalse"):
        return "true or false"
    name = {
        None: "a string",
        "str": "a string",
        "Path": "a path string",
        "int": "an integer",
        "float": "a number",
        "int_or_float": "an integer, or a float below 1 (a fraction)",
    }
    base = name.get(fact["type"], f"a value for {fact['type']}")
    if fact["nargs"] in ("*", "+"):
        base = f"an array of {base.removeprefix('a ').removeprefix('an ')}s"
    if fact["choices"]:
        base += f" from {fact['choices']}"
    return base


def argument_problems(flat: dict[str, Any], parser: dict[str, dict[str, Any]], where: str) -> list[str]:
    """Check a flattened arguments file the way argparse would have, had it checked it."""
    problems = []
    for key, value in flat.items():
        fact = parser.get(key)
        if fact is None or key in COMMAND_LINE_ONLY:
            problems.append(f"{where}: unknown argument {key!r}{did_you_mean(key, parser)}")
            continue
        if fact["kind"] in ("storetrue", "storefalse"):
            ok = isinstance(value, bool)
        elif fact["nargs"] in ("*", "+"):
            # text_encoder_lr is the one nargs option whose single value sd-scripts also takes plainly
            values = value if isinstance(value, list) else ([value] if key == "text_encoder_lr" else None)
            ok = values is not None and all(_type_ok(v, fact["type"]) for v in values)
        else:
            ok = _type_ok(value, fact["type"])
        if ok and fact["choices"] is not None and value not in fact["choices"]:
            ok = False
        if not ok:
            problems.append(f"{where}: {key} = {value!r}: expected {_expected(fact)}")
    return problems


def flatten(tables: dict[str, Any]) -> dict[str, Any]:
    """Flatten one level of tables, as sd-scripts' read_config_from_file does (later keys win)."""
    flat: dict[str, Any] = {}
    for key, value in tables.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


# --- dataset config ------------------------------------------------------------------------


def _schema_value_ok(value: Any, spec: str) -> bool:
    def one(v: Any, kind: str) -> bool:
        if kind == "bool":
            return isinstance(v, bool)
        if kind == "int":  # voluptuous' int check accepts bools too
            return isinstance(v, int)
        if kind == "float":  # and its float check rejects integers
            return isinstance(v, float)
        if kind == "str":
            return isinstance(v, str)
        if kind == "dict":
            return isinstance(v, dict)
        if kind == "none":
            return v is None
        if kind.startswith("pair:"):
            return isinstance(v, list) and len(v) == 2 and all(one(x, kind[5:]) for x in v)
        return True

    return any(one(value, kind) for kind in spec.split("|"))


def _merge(*tables: dict[str, Any]) -> dict[str, Any]:
    return {k: v for table in tables for k, v in table.items()}


#: Per kind of dataset: the schema only its subsets take, and the one its subsets and datasets share.
STYLES = {
    "DreamBooth": ("DB_SUBSET_DISTINCT_SCHEMA", "DB_SUBSET_ASCENDABLE_SCHEMA"),
    "fine-tuning": ("FT_SUBSET_DISTINCT_SCHEMA", None),
    "conditioning": ("CN_SUBSET_DISTINCT_SCHEMA", "CN_SUBSET_ASCENDABLE_SCHEMA"),
}


def dataset_schemas(schema: dict[str, dict[str, Any]], *, masked_loss: bool) -> dict[str, dict[str, Any]]:
    """The allowed keys of each table, built the way train_network.py builds its ConfigSanitizer
    (DreamBooth and fine-tuning subsets, dropout, conditioning subsets when masked_loss is on)."""
    common, dropout, dataset = (schema[n] for n in ("SUBSET_ASCENDABLE_SCHEMA", "DO_SUBSET_ASCENDABLE_SCHEMA",
                                                      "DATASET_ASCENDABLE_SCHEMA"))
    conditioning = schema["CN_SUBSET_ASCENDABLE_SCHEMA"] if masked_loss else {}
    out = {"general": _merge(dataset, common, schema["DB_SUBSET_ASCENDABLE_SCHEMA"], conditioning, dropout)}
    for style, (distinct, ascendable) in STYLES.items():
        shared = schema[ascendable] if ascendable else {}
        out[f"subsets/{style}"] = _merge(common, schema[distinct], shared, dropout)
        out[f"datasets/{style}"] = _merge(dataset, common, shared, dropout)
    return out


def dataset_style(subsets: list[Any], *, masked_loss: bool) -> str | None:
    """Which kind of dataset train_network.py takes a [[datasets]] table for (its validate_flex_dataset)."""
    tables = [sub for sub in subsets if isinstance(sub, dict)]
    if masked_loss and all("conditioning_data_dir" in sub for sub in tables):
        return "conditioning"
    if all("metadata_file" in sub for sub in tables):
        return "fine-tuning"
    if all("metadata_file" not in sub for sub in tables):
        return "DreamBooth"
    return None


def well_shaped(config: Any) -> bool:
    """[general] a table, [[datasets]] an array of tables, each with an array of subset tables."""
    datasets = config.get("datasets", []) if isinstance(config, dict) else None
    return (isinstance(config, dict) and isinstance(config.get("general", {}), dict) and isinstance(datasets, list)
            and all(isinstance(d, dict) and isinstance(d.get("subsets", []), list)
                    and all(isinstance(s, dict) for s in d.get("subsets", [])) for d in datasets))


def dataset_problems(config: dict[str, Any], schema: dict[str, dict[str, Any]], where: str, *,
                     masked_loss: bool = False) -> list[str]:
    """Check a dataset config against sd-scripts' schema facts: table shapes, keys per level, value types."""
    schemas = dataset_schemas(schema, masked_loss=masked_loss)
    problems: list[str] = []

    def check(table: Any, allowed: dict[str, Any], path: str, kind: str) -> None:
        if not isinstance(table, dict):
            problems.append(f"{where}: {path}: expected a table, found {type(table).__name__}")
            return
        for key, value in table.items():
            if key == "subsets" and path.startswith("datasets[") and "." not in path:
                continue
            if key not in allowed:
                elsewhere = sorted({name.split("/")[0] for name, keys in schemas.items() if key in keys})
                hint = f" (allowed in {', '.join(elsewhere)} only)" if elsewhere else did_you_mean(key, allowed)
                problems.append(f"{where}: {path}.{key}: key not allowed in a {kind}{hint}")
            elif not _schema_value_ok(value, allowed[key]["type"]):
                problems.append(f"{where}: {path}.{key} = {value!r}: expected {allowed[key]['type']}")
        for key, fact in allowed.items():
            if fact["required"] and key not in table:
                problems.append(f"{where}: {path}: required key {key!r} is missing")

    unknown = set(config) - {"general", "datasets"}
    problems += [f"{where}: top-level key {k!r} not allowed (only [general] and [[datasets]])" for k in unknown]
    check(config.get("general", {}), schemas["general"], "general", "[general] table")
    datasets = config.get("datasets", [])
    if not isinstance(datasets, list):
        return [*problems, f"{where}: datasets must be an array of tables ([[datasets]]), found a "
                f"{type(datasets).__name__}; a [[datasets.subsets]] table needs a [[datasets]] line before it"]
    for i, dataset in enumerate(datasets):
        subsets = dataset.get("subsets", []) if isinstance(dataset, dict) else []
        if not isinstance(subsets, list):
            problems.append(f"{where}: datasets[{i}].subsets must be an array of tables ([[datasets.subsets]])")
            continue
        style = dataset_style(subsets, masked_loss=masked_loss)
        if style is None:
            problems.append(f"{where}: datasets[{i}]: DreamBooth subsets and fine-tuning subsets (metadata_file) "
                            "cannot be mixed in one dataset; split them into separate [[datasets]]")
            continue
        check(dataset, schemas[f"datasets/{style}"], f"datasets[{i}]", f"{style} dataset")
        for j, subset in enumerate(subsets):
            check(subset, schemas[f"subsets/{style}"], f"datasets[{i}].subsets[{j}]", f"{style} subset")
    return problems


# --- the committed table ---------------------------------------------------------------------


def generate_table(checkout: Path) -> dict[str, Any]:
    """The committed table's content, read from a checkout (its pin recorded alongside)."""
    from wrapper.kohya.checkout import pinned

    pin = pinned()
    return {"sd_scripts": {"tag": pin["tag"], "commit": pin["commit"]}, **live_interface(checkout)}


def main() -> None:
    """Regenerate sd_scripts_args.json from $SD_SCRIPTS_DIR (or vendor/sd-scripts)."""
    from wrapper.kohya.checkout import find_checkout

    table = generate_table(find_checkout())
    TABLE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {TABLE} ({sum(len(v) for v in table['scripts'].values())} arguments)")


if __name__ == "__main__":
    main()
