"""The client package (clients/python) stands on its own and speaks the gateway's language.

A hospital system installs ``medsettle-client`` without the gateway: the package must import
nothing of the gateway's and depend on msgspec alone. Its typed
answers must name only fields the gateway's OpenAPI document gives, so a renamed field fails
here rather than at a hospital's counter; and its signing is the published test vector's.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

import medsettle_client
import msgspec
import pytest
from medsettle_client import Bill, Eligibility, FundStanding, Item, Line, Payer, Problem, Reversal, Settlement, signing

from gateway.http.openapi import openapi_document
from gateway.http.routes import ROUTES

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "python"
SOURCES = sorted((PACKAGE / "src" / "medsettle_client").glob("*.py"))
SCHEMAS = openapi_document(ROUTES)["components"]["schemas"]
# Each of the package's models and the component of the document it reads or writes.
COUNTERPARTS = [
    (Bill, "SettleRequest"),
    (Item, "ItemIn"),
    (Settlement, "SettlementOut"),
    (Payer, "PayerOut"),
    (Line, "LineBreakdown"),
    (Reversal, "ReversalOut"),
    (Eligibility, "EligibilityOut"),
    (FundStanding, "FundStanding"),
    (Problem, "Problem"),
]


def test_the_published_test_vector() -> None:
    """README, "Signing requests": the vector every client in every language must reproduce."""
    body = b'{"request_id":"r-1","reason":""}'
    path = "/v1/settlements/2f6e1c7a-93d4-4d3e-9a8c-0b7f5e4d3c2a/reversal"
    secret = "sk_test_7Yq2pVfV8wq3mZkRr0cXnH4aJ1sLbT6eD9uQ5oWgI2E"
    signature = signing.sign(secret, "POST", path, "1795430400", "n0nce-0123456789abcdef", body)
    assert signature == "47607cd9f7ba8735cc2b73bdd4533b9040feafb5ec893d1ea7cfe98bea24e279"


def test_the_gateway_checks_signatures_with_the_package_s_code() -> None:
    """One home for the scheme: what the gateway checks is what the package signs."""
    from adapters import signing as gateway_signing

    assert gateway_signing.sign is signing.sign and gateway_signing.matches is signing.matches


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_the_package_imports_nothing_of_the_gateway(source: Path) -> None:
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    tops = {name.split(".")[0] for name in imported}
    assert not tops & {"gateway", "adapters", "settlement", "tests"}, source
    assert tops <= {"__future__", "medsettle_client", "msgspec"} | set(sys.stdlib_module_names), tops


def test_the_package_depends_on_msgspec_alone() -> None:
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "medsettle-client"
    assert [requirement.split(">")[0] for requirement in project["dependencies"]] == ["msgspec"]


def test_the_package_is_installed_as_a_distribution_of_its_own() -> None:
    """`make` installs it as hospital systems do, from clients/python, and the gateway requires it by name."""
    distribution = importlib.metadata.distribution("medsettle-client")
    assert [requirement.split(">")[0] for requirement in distribution.requires or []] == ["msgspec"]
    assert Path(medsettle_client.__file__).resolve().is_relative_to(PACKAGE)
    assert "medsettle-client" in (importlib.metadata.distribution("medsettle").requires or [])


@pytest.mark.parametrize(("model", "component"), COUNTERPARTS, ids=lambda value: getattr(value, "__name__", value))
def test_each_typed_answer_names_only_fields_the_document_gives(model: type[msgspec.Struct], component: str) -> None:
    properties = SCHEMAS[component]["properties"]
    missing = [field for field in model.__struct_fields__ if field not in properties]
    assert not missing, f"{model.__name__} reads {missing}, which {component} does not have"


@pytest.mark.parametrize(("model", "component"), [(Bill, "SettleRequest"), (Item, "ItemIn")], ids=["Bill", "Item"])
def test_a_request_the_package_builds_has_every_field_the_gateway_requires(
    model: type[msgspec.Struct], component: str
) -> None:
    required_here = {field.name for field in msgspec.structs.fields(model) if field.required}
    assert set(SCHEMAS[component].get("required", ())) <= required_here
