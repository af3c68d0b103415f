"""The README's table of error codes ("Sandbox", "Errors") names every code the gateway answers, with its status.

Read from the source with ``ast``, so a code raised on a path no test runs is still found: each
``ApiError(status, "code", ...)``, each ``Refused("code", ...)`` (its status from the catalogue in
gateway/problems.py), each engine error class's ``code``, and the catalogue's own titles.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from gateway.problems import STATUS, TITLES

REPO = Path(__file__).resolve().parents[2]
# The engine errors' base class: never raised itself, each refusal is one of its subclasses.
ABSTRACT = {"settlement_error"}


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""


def _text(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def raised_codes() -> dict[str, set[int | None]]:
    """Each code raised in gateway/, settlement/ and adapters/, with the statuses it is raised with
    (None where the status is computed)."""
    codes: dict[str, set[int | None]] = {}
    for root in ("gateway", "settlement", "adapters"):
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and _name(node.func) == "ApiError" and len(node.args) >= 2:
                    if (code := _text(node.args[1])) is not None:
                        status = node.args[0]
                        known = status.value if isinstance(status, ast.Constant) else None
                        codes.setdefault(code, set()).add(known if isinstance(known, int) else None)
                elif isinstance(node, ast.Call) and _name(node.func) == "Refused" and node.args:
                    if (code := _text(node.args[0])) is not None:
                        codes.setdefault(code, set()).add(STATUS.get(code, 422))
                elif isinstance(node, ast.ClassDef) and root == "settlement":
                    for statement in node.body:
                        if (
                            isinstance(statement, ast.Assign)
                            and [_name(target) for target in statement.targets] == ["code"]
                            and (code := _text(statement.value)) is not None
                            and code not in ABSTRACT
                        ):
                            codes.setdefault(code, set()).add(STATUS.get(code, 422))
    return codes


def readme_table() -> dict[str, int]:
    """Code -> status from the README's table under "### Errors"."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Errors\n", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", section, re.M)
    table = dict((code, int(status)) for code, status in rows)
    assert len(table) == len(rows), "a code is in the README's table twice"
    return table


def test_every_code_raised_is_in_the_readme_with_its_status() -> None:
    table = readme_table()
    raised = raised_codes()
    assert len(raised) > 30
    missing = sorted(set(raised) - set(table))
    assert not missing, f"codes the API answers but the README's error table leaves out: {missing}"
    for code, statuses in raised.items():
        assert statuses - {None} <= {table[code]}, f"{code}: raised with {statuses}, README says {table[code]}"


def test_every_code_in_the_readme_exists() -> None:
    known = set(raised_codes()) | set(TITLES) | set(STATUS)
    unknown = sorted(set(readme_table()) - known)
    assert not unknown, f"the README's error table names codes the gateway never answers: {unknown}"
