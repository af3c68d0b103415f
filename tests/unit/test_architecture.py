"""The engine stays pure: no IO, no clock, no asyncio, no gateway or adapter imports.

``settlement/`` is the part of the gateway that decides money. It must give the same
answer for the same inputs, run without a server or a database, and be testable in
isolation (settlement/__init__.py says so in its docstring). These
tests read its source with ``ast`` rather than importing it, so a forbidden import
is caught even on a code path no other test runs. They also run ``mypy --strict``
over it, which with ``int`` money types keeps floats out of money paths.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "settlement"

FORBIDDEN_MODULES = frozenset(
    {
        # the layers above the engine
        "gateway",
        "adapters",
        # IO, networking and the event loop
        "asyncio",
        "aiohttp",
        "asyncpg",
        "uvloop",
        "socket",
        "os",
        "pathlib",
        "io",
        "shutil",
        "tempfile",
        "subprocess",
        # the clock and other sources of nondeterminism
        "time",
        "random",
        "secrets",
        "uuid",
    }
)
CLOCK_ATTRIBUTES = frozenset({"now", "today", "utcnow"})
FORBIDDEN_BUILTINS = frozenset({"open", "input", "print"})


def engine_files() -> list[Path]:
    files = sorted(ENGINE.rglob("*.py"))
    assert files, f"no Python files found under {ENGINE}"
    return files


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Every forbidden import, clock access or IO builtin call in one module's source."""
    tree = ast.parse(source, filename=filename)
    found = []
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module == "uuid" and [alias.name for alias in node.names] == ["UUID"]:
                continue  # the type of an id is pure; making one (uuid4) is not, and needs more than UUID
            if node.level == 0 and module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{where}: from {module} import ...")
        elif isinstance(node, ast.Attribute) and node.attr in CLOCK_ATTRIBUTES:
            # datetime.now(), dt.date.today(), or keeping the bound method to call later.
            found.append(f"{where}: clock access .{node.attr}")
        elif isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Name) and function.id in FORBIDDEN_BUILTINS:
                found.append(f"{where}: call to {function.id}()")
            elif isinstance(function, ast.Name) and function.id == "__import__":
                found.append(f"{where}: dynamic __import__()")
            elif isinstance(function, ast.Attribute) and function.attr == "import_module":
                found.append(f"{where}: dynamic import_module()")
    return found


@pytest.mark.parametrize("path", engine_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_engine_module_does_no_io_and_reads_no_clock(path: Path) -> None:
    found = violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "the settlement engine must stay pure:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "import gateway.app",
        "from adapters.policy_files import load_policy_file",
        "import asyncio",
        "import aiohttp",
        "from asyncpg import Pool",
        "import socket",
        "import time",
        "from time import monotonic",
        "import os.path",
        "from os import environ",
        "from pathlib import Path",
        "import datetime\nstamp = datetime.datetime.now()",
        "import datetime as dt\nday = dt.date.today()",
        "from datetime import datetime\nstamp = datetime.utcnow()",
        "from datetime import datetime\nclock = datetime.now",
        "text = open('policy.toml').read()",
        "mod = __import__('os')",
        "import uuid",
        "from uuid import uuid4",
        "from uuid import UUID, uuid4",
    ],
)
def test_the_checker_catches(source: str) -> None:
    """The check itself has teeth: each of these must be reported."""
    assert violations(source), f"not caught: {source!r}"


@pytest.mark.parametrize(
    "source",
    [
        "import datetime as dt\nday = dt.date(2026, 1, 1)",
        "from decimal import Decimal",
        "import tomllib\npolicy = tomllib.loads(text)",
        "from settlement.models import Bill",
        "import msgspec",
        "from . import money",
        "from timeit import timeit",  # not the time module
        "from uuid import UUID",  # the type of an id, which cannot make one
    ],
)
def test_the_checker_allows(source: str) -> None:
    assert not violations(source), source


def test_engine_source_never_names_float() -> None:
    """Money is int fen: no ``float`` annotation, conversion or isinstance check in the engine."""
    found: list[str] = []
    for path in engine_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found.extend(
            f"{path.relative_to(ROOT)}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Name) and node.id == "float"
        )
        found.extend(
            f"{path.relative_to(ROOT)}:{node.lineno} (string annotation)"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.strip() == "float"
        )
    assert not found, "float appears in the engine:\n" + "\n".join(found)


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (pip install -e '.[dev]')")
def test_engine_passes_mypy_strict() -> None:
    """``[tool.mypy]`` in pyproject.toml: strict, files = settlement."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert config.get("strict") is True, "[tool.mypy] must keep strict = true"
    assert "settlement" in config.get("files", []), "[tool.mypy] files must include settlement"
    completed = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, f"mypy failed:\n{completed.stdout}{completed.stderr}"
