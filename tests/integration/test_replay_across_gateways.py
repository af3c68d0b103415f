"""A captured signed write replayed to another gateway process is refused, as the first process refuses it.

Each process remembers the nonces it has seen, but a replica or worker next to it has its
own memory. Writes therefore claim their nonce in PostgreSQL: a settlement inside the read
it makes anyway, every other write in one statement before it acts. Here the second
"replica" is a second application on the same database, with its own nonce memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters import card_frames as frames
from adapters import identity, signing
from gateway.app_keys import authenticator_key, limiter_key
from gateway.card_reader.listener import card_reader_key
from gateway.http.app import create_app
from tests.integration.conftest import ADMIN, COUNTY, PEPPER, bill, fresh_national_id, register
from tests.integration.processes import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(params=["batched", "one by one"])
async def replica(request, database_url, settings) -> AsyncIterator[TestClient]:
    """A second gateway on the same database, settling in batches or one by one."""
    batch_max = 32 if request.param == "batched" else 1
    app = create_app(msgspec.structs.replace(settings, settle_batch_max=batch_max), dsn=database_url)
    async with TestClient(TestServer(app, host="127.0.0.1")) as replica_client:
        yield replica_client


def _captured(client, terminal: str, path: str, document: dict) -> tuple[bytes, dict[str, str]]:
    """A request as a terminal signed it, and as somebody on the network could copy it."""
    key = client.by_terminal[terminal]
    body = msgspec.json.encode(document)
    headers = signing.signed_headers(key.key_id, key.secret, "POST", path, body)
    return body, {**headers, "Content-Type": "application/json"}


async def _problem_code(response) -> str:
    return (await response.json(content_type=None))["code"]


async def test_a_registry_write_replayed_to_another_replica_is_refused(client, replica, pool):
    national_id = fresh_national_id()
    tier = {"programme": "hardship_aid", "code": "destitute", "effective_from": "2026-01-01"}
    body, headers = _captured(client, "admin-1", "/v1/people", {"person_id": national_id, "memberships": [tier]})
    first = await client.client.post("/v1/people", data=body, headers=headers)
    assert first.status == 201, await first.text()
    # A later change, which a replay of the first request would otherwise revert.
    struck = {**tier, "struck_off_on": "2026-06-01"}
    later = await client.post("/v1/people", json={"person_id": national_id, "memberships": [struck]}, headers=ADMIN)
    assert later.status == 200, await later.text()

    replayed = await replica.post("/v1/people", data=body, headers=headers)
    assert replayed.status == 401
    assert await _problem_code(replayed) == "nonce_reused"
    async with pool.acquire() as connection:
        ends = await connection.fetchval(
            "SELECT struck_off_on FROM memberships WHERE person_key = $1 AND programme = 'hardship_aid'",
            identity.person_key(national_id, PEPPER),
        )
    assert str(ends) == "2026-06-01"  # the later change stands


async def test_a_settlement_replayed_to_another_replica_is_refused(client, replica, pool):
    person = await register(client, ("insurance", "resident"))
    body, headers = _captured(client, "term-C001", "/v1/settlements", bill(person, ("A", 10_000)))
    first = await client.client.post("/v1/settlements", data=body, headers=headers)
    assert first.status == 201, await first.text()

    replayed = await replica.post("/v1/settlements", data=body, headers=headers)
    assert replayed.status == 401
    assert await _problem_code(replayed) == "nonce_reused"


async def test_a_fresh_settlement_whose_nonce_another_replica_took_is_refused_and_not_written(client, replica, pool):
    """The claim decides, not the order of arrival: whoever claims the nonce first acts, the other writes nothing."""
    person = await register(client, ("insurance", "resident"))
    bill_one = bill(person, ("A", 10_000))
    body, headers = _captured(client, "term-C001", "/v1/settlements", bill_one)
    first = await replica.post("/v1/settlements", data=body, headers=headers)
    assert first.status == 201, await first.text()
    replayed = await client.client.post("/v1/settlements", data=body, headers=headers)
    assert replayed.status == 401
    async with pool.acquire() as connection:
        count = await connection.fetchval(
            "SELECT count(*) FROM settlements WHERE terminal_id = 'term-C001' AND request_id = $1",
            bill_one["request_id"],
        )
    assert count == 1


async def test_a_reversal_replayed_to_another_replica_is_refused(client, replica):
    person = await register(client, ("insurance", "resident"))
    settled = await client.post("/v1/settlements", json=bill(person, ("A", 10_000)), headers=COUNTY)
    assert settled.status == 201
    path = f"/v1/settlements/{(await settled.json())['settlement_id']}/reversal"
    body, headers = _captured(client, "term-C001", path, {"request_id": f"rev-{uuid.uuid4().hex}", "reason": ""})
    first = await client.client.post(path, data=body, headers=headers)
    assert first.status == 201, await first.text()

    replayed = await replica.post(path, data=body, headers=headers)
    assert replayed.status == 401
    assert await _problem_code(replayed) == "nonce_reused"


async def test_reads_and_fresh_writes_work_on_both_replicas(client, replica):
    """Claiming nonces refuses replays only: every freshly signed request works wherever it lands."""
    person = await register(client, ("insurance", "resident"))
    for target in (client.client, replica):
        body, headers = _captured(client, "term-C001", "/v1/settlements", bill(person, ("A", 10_000)))
        response = await target.post("/v1/settlements", data=body, headers=headers)
        assert response.status == 201, await response.text()


async def _frame_answer(port: int, message: frames.Signed) -> frames.Response | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frames.encode_frame(message))
        await writer.drain()
        async with asyncio.timeout(30):
            return await frames.read_response(reader)
    finally:
        writer.close()


async def test_a_card_reader_settle_frame_replayed_to_another_replica_is_refused(client, database_url, settings):
    """The card-reader door claims nonces the same way: a captured frame is refused by the other gateway."""
    person = await register(client, ("insurance", "resident"))
    key = client.by_terminal["term-C001"]
    body = msgspec.msgpack.encode(bill(person, ("A", 10_000)))
    captured = frames.sign_frame(frames.Settle, 1, key.key_id, key.secret, body)
    ports = []
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(2):
            app = create_app(msgspec.structs.replace(settings, reader_port=free_port()), dsn=database_url)
            await stack.enter_async_context(TestClient(TestServer(app, host="127.0.0.1")))
            ports.append(app[card_reader_key].port)
        first = await _frame_answer(ports[0], captured)
        assert isinstance(first, frames.Result) and first.status == 201, first
        replayed = await _frame_answer(ports[1], captured)
    assert isinstance(replayed, frames.Error), replayed
    assert (replayed.status, replayed.code) == (401, "nonce_reused")


@pytest.mark.parametrize("route", ["/v1/settlements", "/v1/people"])
async def test_a_write_replayed_to_the_same_gateway_is_refused_by_its_claim_not_by_memory(client, route):
    """Writes' nonces live in PostgreSQL only: the process's memory holds reads' nonces, and a replay
    to the same process is still refused."""
    remembered = client.client.app[authenticator_key].nonces
    if route == "/v1/settlements":
        terminal, document = "term-C001", bill(await register(client, ("insurance", "resident")), ("A", 10_000))
    else:
        terminal, document = "admin-1", {"person_id": fresh_national_id(), "memberships": [], "name": "x"}
    body, headers = _captured(client, terminal, route, document)
    before = len(remembered)
    first = await client.client.post(route, data=body, headers=headers)
    assert first.status == 201, await first.text()
    assert len(remembered) <= before  # nothing added (expired slots may have gone)
    replayed = await client.client.post(route, data=body, headers=headers)
    assert replayed.status == 401
    assert await _problem_code(replayed) == "nonce_reused"


async def test_a_write_refused_before_its_claim_cannot_be_replayed_later(client, database_url, settings, pool):
    """A settlement refused by the rate limit never reached its claim; once the limit has passed, a
    captured copy must still be refused, or the person would be billed twice."""
    strict = msgspec.structs.replace(settings, rate_limit_per_second=0.001, rate_limit_burst=1)
    app = create_app(strict, dsn=database_url)
    async with TestClient(TestServer(app, host="127.0.0.1")) as gateway:
        person = await register(client, ("insurance", "resident"))
        spent = await gateway.post("/v1/eligibility", **_signed(client, "/v1/eligibility", {"person_id": person}))
        assert spent.status == 200  # the terminal's one token
        refused_bill = bill(person, ("A", 10_000))
        body, headers = _captured(client, "term-C001", "/v1/settlements", refused_bill)
        refused = await gateway.post("/v1/settlements", data=body, headers=headers)
        assert refused.status == 429
        app[limiter_key].rate = 1_000_000.0  # the limit has passed
        replayed = await gateway.post("/v1/settlements", data=body, headers=headers)
        assert replayed.status == 401, await replayed.text()
        assert await _problem_code(replayed) == "nonce_reused"
    async with pool.acquire() as connection:
        assert not await connection.fetchval(
            "SELECT count(*) FROM settlements WHERE request_id = $1", refused_bill["request_id"]
        )


def _signed(client, path: str, document: dict) -> dict:
    body, headers = _captured(client, "term-C001", path, document)
    return {"data": body, "headers": headers}
