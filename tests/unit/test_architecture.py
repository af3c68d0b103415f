"""The layers keep to their places: the engine stays pure, adapters sit below the gateway.

The engine: no IO, no clock, no asyncio, no gateway or adapter imports.
``settlement/`` is the part of the gateway that decides money. It must give the same
answer for the same inputs, run without a server or a database, and be testable in
isolation (settlement/__init__.py says so in its docstring). These
tests read its source with ``ast`` rather than importing it, so a forbidden import
is caught even on a code path no other test runs. They also run ``mypy --strict``
over it, which with ``int`` money types keeps floats out of money paths.

The gateway (HTTP handlers and the command line) reads and writes through adapters
(``Store``, ``Reports``): no SQL text, no asyncpg outside its composition roots, no
reaching into a store's connection pool; and no adapter imports the gateway.

Imports: no cycle among the modules of gateway/, adapters/ and settlement/ (each found
cycle is printed), no import inside a function in gateway/ but an optional dependency in
``LOCAL_IMPORTS_ALLOWED``, and no handler importing the store.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
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
        "import gateway.http.app",
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


# ---------------------------------------------------------------- the gateway's layers
#
# adapters/ talks to PostgreSQL and never to the HTTP or command-line layer above it.
# gateway/ handles HTTP and the command line: it calls adapters (Store, Reports, ...) and
# holds no SQL, no asyncpg and no connection pool of its own. Only the composition roots,
# which open the pools and hand them to the adapters, import asyncpg.

ADAPTERS = ROOT / "adapters"
GATEWAY = ROOT / "gateway"
COMPOSITION_ROOTS = frozenset({"gateway/http/app.py", "gateway/cli/database.py"})

# Rules a gateway module may still break, each entry one file and the rules it is excused from, with the
# reason. It records work left to do: an entry that no longer breaks its rule fails
# test_still_to_move_is_not_stale, so the list only shrinks.

# SQL text: a statement keyword, then (on the same or a later line) the word that goes with it.
SQL_TEXT = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b.+\b(FROM|INTO|SET)\b", re.DOTALL)
POOL_ATTRIBUTES = frozenset({"pool", "reports_pool", "reports_connection"})


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _modules(folder: Path) -> list[Path]:
    files = sorted(folder.rglob("*.py"))
    assert files, f"no Python files found under {folder}"
    return files


def _imported_modules(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import, relative ones resolved from ``module``'s dotted name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.lineno, node.module or ""))
            else:
                parts = module.split(".")  # adapters.reports: "." is adapters, ".." the top level
                base = parts[: max(0, len(parts) - node.level)]
                found.append((node.lineno, ".".join([*base, *([node.module] if node.module else [])])))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            dynamic = (isinstance(function, ast.Name) and function.id == "__import__") or (
                isinstance(function, ast.Attribute) and function.attr == "import_module"
            )
            if dynamic and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def imports_of(source: str, top: str, *, module: str, filename: str = "<source>") -> list[str]:
    """Every import of package ``top`` (or a module in it) in the source of ``module`` (its dotted name)."""
    tree = ast.parse(source, filename=filename)
    return [
        f"{filename}:{line}: imports {name}"
        for line, name in _imported_modules(tree, module)
        if name.split(".")[0] == top
    ]


def _string_value(node: ast.AST) -> str | None:
    """The text of a string literal, an f-string (each placeholder as ``{}``) or a sum of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) and isinstance(part.value, str) else "{}"
            for part in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _string_value(node.left), _string_value(node.right)
        if left is not None or right is not None:
            return (left or "{}") + (right or "{}")
    return None


def sql_text(source: str, filename: str = "<source>") -> list[str]:
    """Every string (literal, f-string or concatenation) in the source that reads as SQL."""
    tree = ast.parse(source, filename=filename)
    return [
        f"{filename}:{node.lineno}: SQL {' '.join(text.split())[:60]!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant | ast.JoinedStr | ast.BinOp)
        and (text := _string_value(node)) is not None
        and SQL_TEXT.search(text)
    ]


def pool_reaches(source: str, filename: str = "<source>") -> list[str]:
    """Every reach for a connection pool: ``x.pool``, ``x.reports_pool``, ``x.reports_connection()``."""
    tree = ast.parse(source, filename=filename)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in POOL_ATTRIBUTES:
            found.append(f"{filename}:{node.lineno}: .{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in POOL_ATTRIBUTES
        ):
            found.append(f"{filename}:{node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def gateway_rule_breaks(path: Path) -> dict[str, list[str]]:
    """For one gateway module, what it does that the gateway layer must not, by rule."""
    source, name = path.read_text(encoding="utf-8"), _relative(path)
    breaks = {"pool": pool_reaches(source, name)}
    if name not in COMPOSITION_ROOTS:
        breaks["asyncpg"] = imports_of(source, "asyncpg", module=_module_name(path), filename=name)
        breaks["sql"] = sql_text(source, name)
    return breaks


@pytest.mark.parametrize("path", _modules(ADAPTERS), ids=_relative)
def test_adapters_never_import_the_gateway(path: Path) -> None:
    found = imports_of(path.read_text(encoding="utf-8"), "gateway", module=_module_name(path), filename=_relative(path))
    assert not found, "adapters/ sits below gateway/ and must not import it:\n" + "\n".join(found)


@pytest.mark.parametrize("path", _modules(GATEWAY), ids=_relative)
def test_gateway_holds_no_sql_no_asyncpg_and_no_pool(path: Path) -> None:
    found = [line for lines in gateway_rule_breaks(path).values() for line in lines]
    assert not found, (
        "gateway/ reads and writes through adapters (Store, Reports): no SQL text, no asyncpg import"
        " outside the composition roots, no reaching for a connection pool:\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("import gateway", "adapters.reports"),
        ("import gateway.http.app", "adapters.reports"),
        ("from gateway.problems import ApiError", "adapters.reports"),
        ("from gateway import api_models", "adapters.reports"),
        ("from ..gateway import app", "adapters.reports"),
        ("def later():\n    from gateway.http.app import service_key", "adapters.reports"),
        ("import importlib\nmodule = importlib.import_module('gateway.http.app')", "adapters.reports"),
    ],
)
def test_the_layer_checker_catches_an_adapter_importing_the_gateway(source: str, module: str) -> None:
    assert imports_of(source, "gateway", module=module), source


@pytest.mark.parametrize(
    "source",
    ["from adapters import finance", "from . import finance", "import gatewayish", "from settlement import money"],
)
def test_the_layer_checker_allows(source: str) -> None:
    assert not imports_of(source, "gateway", module="adapters.reports"), source


@pytest.mark.parametrize(
    "source",
    [
        "import asyncpg",
        "import asyncpg.exceptions",
        "from asyncpg import Pool",
        "from asyncpg.exceptions import UniqueViolationError",
        "def later():\n    import asyncpg",
    ],
)
def test_the_layer_checker_catches_asyncpg(source: str) -> None:
    assert imports_of(source, "asyncpg", module="gateway.http.handlers.finance"), source


@pytest.mark.parametrize(
    "source",
    [
        'QUERY = "SELECT clinic_id FROM clinics"',
        'QUERY = """\nSELECT l.clinic_id,\n       count(*)\nFROM ledger_entries l\n"""',
        "row = await connection.fetchrow('SELECT EXISTS (SELECT 1 FROM clinics)')",
        'await connection.execute("INSERT INTO audit_log (actor) VALUES ($1)", actor)',
        'await connection.execute("UPDATE accumulators SET version = version + 1")',
        'await connection.execute("DELETE FROM request_nonces WHERE expires_at < now()")',
        'query = f"SELECT {columns} FROM settlements WHERE {period}"',
        'query = "SELECT total " + "FROM settlements"',
        'query = ("SELECT total "\n         "FROM settlements")',
    ],
)
def test_the_layer_checker_catches_sql_text(source: str) -> None:
    assert sql_text(source), source


@pytest.mark.parametrize(
    "source",
    [
        '"""Select the clinics from the list."""',
        'HELP = "update the registry from a bureau list"',
        'TITLE = "SELECT a date"',
        'LABEL = "DELETE"',
    ],
)
def test_the_sql_checker_allows_prose(source: str) -> None:
    assert not sql_text(source), source


@pytest.mark.parametrize(
    "source",
    [
        "async with store.reports_connection() as connection: pass",
        "async with service.store.pool.acquire() as connection: pass",
        "pool = request.app[service_key].store.pool",
        "pool = store.reports_pool",
        "pool = getattr(store, 'pool')",
    ],
)
def test_the_layer_checker_catches_a_handler_reaching_for_the_pool(source: str) -> None:
    assert pool_reaches(source), source


def test_the_layer_checker_allows_a_local_pool() -> None:
    assert not pool_reaches("pool = await db.create_pool(dsn)\nreports = Reports(pool, acquire_timeout=5.0)")


# ---------------------------------------------------------------- imports: no cycles, none hidden in functions
#
# Every import among the project's modules, at module level or inside a function, is an edge of
# one graph, and that graph has no cycle: a module never needs, even indirectly, a module that
# needs it. A function-local import is the usual way to hide such a cycle (it runs once both
# modules are loaded), so gateway/ has none but the few in LOCAL_IMPORTS_ALLOWED, each of an
# optional dependency, with the reason. Handlers go through the service and the reports objects,
# never the store.

PROJECT = ("gateway", "adapters", "settlement")

# (file, module imported inside a function): why it is imported there and not at the top.
LOCAL_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {
    ("gateway/cli/serve.py", "uvloop"): "optional: not installed on Windows (a pyproject marker); asyncio's loop then",
}

# Where requests are handled: HTTP handlers, dashboard pages and the card reader's frames.
HANDLERS = ("gateway/http/handlers", "gateway/dashboard", "gateway/card_reader")
STORE_MODULES = frozenset({"adapters.store", "adapters.settlement_sql", "adapters.batching"})


@dataclass(frozen=True, slots=True)
class Import:
    line: int
    module: (
        str  # as written, made absolute: "gateway.http" for both `import gateway.http` and `from gateway.http import x`
    )
    names: tuple[str, ...]  # what it may name, most specific first: ("gateway.http.x", "gateway.http")
    local: bool  # inside a function: it runs when the function is called, not when the module is loaded


class _ImportFinder(ast.NodeVisitor):
    def __init__(self, module: str, *, package: bool) -> None:
        self.module = module
        self.package = package
        self.found: list[Import] = []
        self._functions = 0

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self._functions += 1
        self.generic_visit(node)
        self._functions -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _add(self, line: int, module: str, names: tuple[str, ...]) -> None:
        self.found.append(Import(line, module, names, self._functions > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node.lineno, alias.name, (alias.name,))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            parts = self.module.split(".")
            base = parts[: len(parts) - node.level + (1 if self.package else 0)]
            module = ".".join([*base, *([module] if module else [])])
        for alias in node.names:
            self._add(node.lineno, module, (module,) if alias.name == "*" else (f"{module}.{alias.name}", module))

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        dynamic = (isinstance(function, ast.Name) and function.id == "__import__") or (
            isinstance(function, ast.Attribute) and function.attr == "import_module"
        )
        if dynamic and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            self._add(node.lineno, node.args[0].value, (node.args[0].value,))
        self.generic_visit(node)


def imports_in(source: str, module: str, *, package: bool = False, filename: str = "<source>") -> list[Import]:
    """Every import in ``module``'s source (``package``: it is a package's __init__.py), relative ones resolved."""
    finder = _ImportFinder(module, package=package)
    finder.visit(ast.parse(source, filename=filename))
    return finder.found


def _project_module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_sources() -> tuple[dict[str, str], frozenset[str]]:
    """Source text by dotted module name for every module of the project, and which of them are packages."""
    paths = [path for top in PROJECT for path in _modules(ROOT / top)]
    sources = {_project_module(path): path.read_text(encoding="utf-8") for path in paths}
    return sources, frozenset(_project_module(path) for path in paths if path.name == "__init__.py")


def import_graph(sources: dict[str, str], packages: frozenset[str] = frozenset()) -> dict[str, set[str]]:
    """Each module's imports of other modules in ``sources`` (module and function level, dynamic ones too).

    ``from pkg import name`` names the module ``pkg.name`` when there is one, else ``pkg``.
    """
    graph: dict[str, set[str]] = {}
    for module, source in sources.items():
        edges = graph.setdefault(module, set())
        for found in imports_in(source, module, package=module in packages, filename=module):
            target = next((name for name in found.names if name in sources), None)
            name = found.names[-1]
            while target is None and "." in name:
                name = name.rpartition(".")[0]
                target = name if name in sources else None
            if target is not None and target != module:
                edges.add(target)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: for each group of modules that import one another, the shortest cycle through each."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def connect(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while (member := stack.pop()) != module:
                group.append(member)
            if group:
                groups.append(sorted([module, *group]))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    cycles: list[list[str]] = []
    for group in groups:
        members = set(group)
        for start in group:
            came_from: dict[str, str] = {}
            frontier = [start]
            while frontier and start not in came_from:
                following = []
                for module in frontier:
                    for target in sorted(graph[module] & members):
                        if target not in came_from:
                            came_from[target] = module
                            following.append(target)
                frontier = following
            cycle = [start]
            while (previous := came_from[cycle[-1]]) != start:
                cycle.append(previous)
            cycle = [start, *reversed(cycle[1:]), start]
            turn = cycle.index(min(cycle[:-1]))  # one spelling of each cycle, from its first module
            if (spelled := [*cycle[turn:-1], *cycle[:turn], cycle[turn]]) not in cycles:
                cycles.append(spelled)
    return cycles


def _shown(cycles: list[list[str]]) -> str:
    return "\n".join("  " + " -> ".join(cycle) for cycle in cycles)


def test_no_import_cycles_among_project_modules() -> None:
    cycles = import_cycles(import_graph(*project_sources()))
    assert not cycles, "modules of gateway/, adapters/ and settlement/ import one another in a circle:\n" + _shown(
        cycles
    )


@pytest.mark.parametrize(
    "sources",
    [
        {"pkg.a": "import pkg.b", "pkg.b": "from pkg.a import thing"},
        {"pkg.a": "from pkg import b", "pkg.b": "from pkg import c", "pkg.c": "from pkg.a import thing"},
        {"pkg.a": "from pkg.b import thing", "pkg.b": "def later():\n    from pkg.a import thing"},
        {"pkg.a": "from . import b", "pkg.b": "from .a import thing"},
        {"pkg.a": "import pkg.b", "pkg.b": "import importlib\na = importlib.import_module('pkg.a')"},
        {"pkg.a": "from pkg.b.c import thing", "pkg.b": "", "pkg.b.c": "async def f():\n    import pkg.a.thing"},
    ],
)
def test_the_cycle_checker_catches(sources: dict[str, str]) -> None:
    assert import_cycles(import_graph(sources)), sources


@pytest.mark.parametrize(
    "sources",
    [
        {"pkg.a": "from pkg import b", "pkg.b": "from pkg import c", "pkg.c": "import json"},
        {"pkg.a": "from pkg.b import thing\nfrom pkg.c import other", "pkg.b": "from pkg.c import other", "pkg.c": ""},
        {"pkg.a": "import pkg.a.sub", "pkg.a.sub": "import json"},
    ],
)
def test_the_cycle_checker_allows(sources: dict[str, str]) -> None:
    assert not import_cycles(import_graph(sources)), sources


def test_the_cycle_checker_names_the_cycle() -> None:
    graph = import_graph({"pkg.app": "from pkg import routes", "pkg.routes": "x = 1", "pkg.finance": "import pkg.app"})
    graph["pkg.routes"].add("pkg.finance")
    assert import_cycles(graph) == [["pkg.app", "pkg.routes", "pkg.finance", "pkg.app"]]


def local_imports(source: str, module: str, filename: str = "<source>") -> list[tuple[str, str]]:
    """(where, module) of every import inside a function."""
    return [(f"{filename}:{found.line}", found.module) for found in imports_in(source, module) if found.local]


@pytest.mark.parametrize("path", _modules(GATEWAY), ids=_relative)
def test_gateway_imports_at_module_level(path: Path) -> None:
    name = _relative(path)
    found = [
        f"{where}: imports {module} inside a function"
        for where, module in local_imports(path.read_text(encoding="utf-8"), _module_name(path), name)
        if (name, module) not in LOCAL_IMPORTS_ALLOWED
    ]
    assert not found, (
        "gateway/ imports at the top of a module; a circle an import inside a function works around is untangled"
        " instead (an optional dependency goes in LOCAL_IMPORTS_ALLOWED, with the reason):\n" + "\n".join(found)
    )


@pytest.mark.parametrize(("name", "module"), sorted(LOCAL_IMPORTS_ALLOWED))
def test_local_imports_allowed_is_not_stale(name: str, module: str) -> None:
    path = ROOT / name
    assert path.is_file(), f"{name} is gone: strike it off LOCAL_IMPORTS_ALLOWED"
    found = {imported for _, imported in local_imports(path.read_text(encoding="utf-8"), _module_name(path))}
    assert module in found, f"{name} no longer imports {module} inside a function: strike it off LOCAL_IMPORTS_ALLOWED"


@pytest.mark.parametrize(
    "source",
    [
        "def handler():\n    import json",
        "async def handler(request):\n    from gateway.http import keys",
        "class Listener:\n    def start(self):\n        from gateway.service import Service",
        "def later():\n    if True:\n        from . import sibling",
        "def later():\n    import importlib\n    return importlib.import_module('gateway.http.app')",
        "handler = lambda: __import__('json')",
    ],
)
def test_the_local_import_checker_catches(source: str) -> None:
    assert local_imports(source, "gateway.http.handlers.finance"), source


@pytest.mark.parametrize(
    "source",
    [
        "import json\n\ndef handler():\n    return json.dumps({})",
        "try:\n    import uvloop\nexcept ImportError:\n    uvloop = None",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gateway.service import Service",
        "class Listener:\n    from gateway.service import Service",
    ],
)
def test_the_local_import_checker_allows(source: str) -> None:
    assert not local_imports(source, "gateway.http.handlers.finance"), source


def store_imports(source: str, module: str, filename: str = "<source>") -> list[str]:
    """Every import of the store (or its parts) in ``module``'s source."""
    return [
        f"{filename}:{found.line}: imports {found.names[0]}"
        for found in imports_in(source, module, filename=filename)
        if any(name in STORE_MODULES or name.startswith(tuple(m + "." for m in STORE_MODULES)) for name in found.names)
    ]


def _handler_modules() -> list[Path]:
    paths = [path for folder in HANDLERS for path in _modules(ROOT / folder)]
    assert any(_relative(path).startswith("gateway/http/handlers/") for path in paths)
    return paths


@pytest.mark.parametrize("path", _handler_modules(), ids=_relative)
def test_handlers_never_import_the_store(path: Path) -> None:
    found = store_imports(path.read_text(encoding="utf-8"), _module_name(path), _relative(path))
    assert not found, (
        "handlers reach the database through the Service and Reports objects the app gives them, never"
        " through the store:\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    "source",
    [
        "from adapters.store import Store",
        "from adapters import store",
        "import adapters.store",
        "from adapters.settlement_sql import load_settlement",
        "async def handler(request):\n    from adapters.store import Store",
    ],
)
def test_the_store_checker_catches(source: str) -> None:
    assert store_imports(source, "gateway.http.handlers.finance"), source


@pytest.mark.parametrize(
    "source",
    [
        "from adapters.reports import Reports",
        "from gateway.service import Service",
        "from adapters import finance",
        "from adapters.storefront import shelf",
    ],
)
def test_the_store_checker_allows(source: str) -> None:
    assert not store_imports(source, "gateway.http.handlers.finance"), source
