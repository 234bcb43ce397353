"""Static checks in the suite: ``ruff check`` and the import contracts of pyproject.toml
(``lint-imports``). Each skips with a reason where its tool is not installed."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(module: str, script: str) -> str:
    """The console script beside this interpreter (a venv's bin/ need not be on PATH)."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{script} is not installed (pip install -e '.[dev]')")
    beside = Path(sys.executable).parent / script
    found = str(beside) if beside.exists() else shutil.which(script)
    if found is None:
        pytest.skip(f"{script} is installed but its command is not found")
    return found


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff_check():
    out = _run([_tool("ruff", "ruff"), "check", "--no-cache", "gtn_deploy", "tests",
                "benchmarks"])
    assert out.returncode == 0, f"ruff check found problems:\n{out.stdout}{out.stderr}"


def test_import_contracts():
    out = _run([_tool("importlinter", "lint-imports"), "--no-cache"])
    assert out.returncode == 0, f"lint-imports: a contract is broken:\n{out.stdout}{out.stderr}"


def test_layers_name_every_module():
    """The layers contract puts every module and package of gtn_deploy in a row, so a new
    top-level module cannot slip past the layer order (docs/architecture.md)."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    layered = {name.strip()
               for c in config["tool"]["importlinter"]["contracts"]
               if c.get("containers") == ["gtn_deploy"]
               for row in c["layers"] for name in row.replace(":", "|").split("|")}
    package = ROOT / "gtn_deploy"
    rooms = {p.stem for p in package.glob("*.py") if p.stem != "__init__"} | \
        {p.parent.name for p in package.glob("*/__init__.py")}
    assert rooms - layered == set(), f"modules in no layer: {sorted(rooms - layered)}"
    assert layered - rooms == set(), f"layers name missing modules: {sorted(layered - rooms)}"
