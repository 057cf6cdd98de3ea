"""The shape of wrapper/: layered packages, no import cycles, one process boundary, a map that is true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    """pyproject.toml's import-linter contracts: layers, recipes apart, no cycles between siblings."""
    result = subprocess.run([Path(sys.executable).parent / "lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_no_module_imports_itself_back():
    graph = grimp.build_graph("wrapper", "recipes")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                cycles.append(f"{module} -> {' -> '.join(chain)}")
    assert cycles == []


def test_only_launch_starts_processes():
    """One process boundary: subprocess lives in wrapper/launch.py (image workers use a process pool)."""
    starts = re.compile(r"\bimport subprocess\b|\bsubprocess\.|\bos\.(system|popen|exec\w*|spawn\w*)\(")
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "wrapper").rglob("*.py")
                 if p.name != "launch.py" and starts.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_readme_layout_names_every_module():
    """The README's Layout section is the map: every module of wrapper/ and recipes/ appears in it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    missing = []
    for path in sorted([*(ROOT / "wrapper").rglob("*.py"), *(ROOT / "recipes").glob("*.py")]):
        if path.name == "__init__.py":
            continue
        if f"{path.parent.name}/" not in layout:
            missing.append(f"{path.parent.relative_to(ROOT).as_posix()}/")
        if not re.search(rf"\b{re.escape(path.stem)}\b", layout):
            missing.append(path.relative_to(ROOT).as_posix())
    assert missing == []
