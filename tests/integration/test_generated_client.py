"""What an integrator does first: load the gateway's own ``/openapi.json`` into their tools.

The served document, fetched unsigned from a running gateway, must be valid OpenAPI (what Swagger
UI, Postman and code generators check first), and a client generated from it with
openapi-python-client must settle the README's worked example. The generated code goes into the
test's temporary folder; its requests are signed, as a vendor's would be, by an httpx event hook
that calls the project's signing helper.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from adapters import signing
from tests.integration.conftest import SignedClient, worked_example_bill

pytestmark = pytest.mark.integration

PACKAGE = "medsettle_gateway_client"


async def served_document(client: SignedClient) -> dict[str, Any]:
    response = await client.client.get("/openapi.json")  # no signature: tools load it as it is
    assert response.status == 200
    document: dict[str, Any] = await response.json()
    return document


async def test_the_served_document_is_valid_openapi(client: SignedClient) -> None:
    document = await served_document(client)
    validate(document)
    assert document["openapi"].startswith("3.1")


@pytest.fixture
def generated_package(tmp_path: Path) -> Iterator[Path]:
    """Room for a generated package, importable while the test runs and forgotten after it."""
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def generate(document: dict[str, Any], folder: Path) -> None:
    """openapi-python-client, as an integrator runs it, over the served document."""
    (folder / "openapi.json").write_text(json.dumps(document), encoding="utf-8")
    # No formatter hooks: the generated code is imported, not read.
    (folder / "config.yaml").write_text(f"post_hooks: []\npackage_name_override: {PACKAGE}\n", encoding="utf-8")
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--path", "openapi.json"]
    command += ["--config", "config.yaml", "--meta", "none", "--output-path", PACKAGE]
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def signing_hook(key_id: str, secret: str) -> Any:
    """An httpx request hook that signs each request as the gateway asks (README, "Signing requests")."""

    async def sign(request: httpx.Request) -> None:
        body = await request.aread()
        path = request.url.raw_path.decode("ascii")  # the path and query exactly as sent
        request.headers.update(signing.signed_headers(key_id, secret, request.method, path, body))

    return sign


async def test_a_client_generated_from_the_document_settles_the_worked_example(
    client: SignedClient, generated_package: Path
) -> None:
    generate(await served_document(client), generated_package)
    gateway_client = importlib.import_module(PACKAGE)
    settle = importlib.import_module(f"{PACKAGE}.api.default.settle")
    get_settlement = importlib.import_module(f"{PACKAGE}.api.default.get_settlement")
    models = importlib.import_module(f"{PACKAGE}.models")

    bill = await worked_example_bill(client, "generated-client-worked-example")
    key = client.by_terminal["term-C001"]
    api = gateway_client.Client(
        base_url=str(client.client.make_url("")).rstrip("/"),
        httpx_args={"event_hooks": {"request": [signing_hook(key.key_id, key.secret)]}},
        raise_on_unexpected_status=True,
    )
    async with api as api:
        first = await settle.asyncio_detailed(client=api, body=models.SettleRequest.from_dict(bill))
        assert first.status_code == 201, first.content
        settlement = first.parsed
        assert isinstance(settlement, models.SettlementOut)
        # docs/worked-examples.md, example 2: the same figures whoever calls.
        assert (settlement.total, settlement.insurance, settlement.veteran_subsidy) == (2000000, 1275000, 291000)
        assert (settlement.hardship_aid, settlement.out_of_pocket) == (135800, 298200)
        assert [payer.fund for payer in settlement.payers] == ["insurance", "veteran_subsidy", "hardship_aid"]

        again = await settle.asyncio_detailed(client=api, body=models.SettleRequest.from_dict(bill))
        assert again.status_code == 200 and again.parsed.replayed
        assert again.parsed.settlement_id == settlement.settlement_id

        stored = await get_settlement.asyncio(client=api, settlement_id=settlement.settlement_id)
        assert isinstance(stored, models.SettlementOut) and stored.out_of_pocket == 298200

        refused = await settle.asyncio_detailed(
            client=api, body=models.SettleRequest.from_dict({**bill, "clinic_id": "C002", "request_id": "other"})
        )
        assert refused.status_code == 403
        assert isinstance(refused.parsed, models.Problem) and refused.parsed.code == "terminal_not_for_clinic"
