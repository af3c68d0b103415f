"""The database connection is lost in the middle of a COMMIT: the gateway cannot know the outcome.

A proxy between the gateway and PostgreSQL (``pgproxy.py``) cuts the gateway's connection
exactly when the committing message goes out, either after the server got it (the
settlement committed, only the answer is lost) or before (nothing committed). The gateway
sees the same thing both times, so its answer must be the same: 503 with Retry-After,
"retry with the same request id". Never a 4xx (the terminal would give up on a settlement
that may be on the ledger) and never a 500. The retry resolves it: a replay of the first
answer if it committed, one fresh settlement if it did not, never two.

Where the commit is, as asyncpg sends it (checked by the test): a reversal runs in
``connection.transaction()``, which commits with the simple-query message ``Q "COMMIT;"``;
a settlement is one statement outside any transaction block, which commits at the
``Sync`` after its ``Bind``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.http.app import create_app
from tests.integration.conftest import COUNTY, SignedClient, register
from tests.integration.fault_tally import Tally, assert_whole, programmes, random_bill, settle_up, stored
from tests.integration.pgproxy import PgProxy, is_commit

pytestmark = [pytest.mark.integration, pytest.mark.fault]

TERMINAL = "term-C001"


@pytest.fixture(scope="module")
async def through_proxy(client, database_url: str, settings: Any) -> AsyncIterator[tuple[PgProxy, SignedClient]]:
    """An in-process gateway whose every database connection goes through the proxy."""
    async with PgProxy(database_url) as proxy:
        app = create_app(settings, dsn=proxy.url)
        async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
            yield proxy, SignedClient(test_client, {key.key_id: key for key in client.by_terminal.values()})


@pytest.mark.parametrize("forward", [True, False], ids=["commit-reached-the-server", "commit-never-sent"])
@pytest.mark.parametrize("operation", ["settle", "reverse"])
async def test_connection_lost_during_commit_answers_503_and_the_retry_resolves_it(
    operation, forward, through_proxy, client, pool, rng
):
    proxy, proxied = through_proxy
    tally = Tally(
        f"connection lost during the {operation} COMMIT, {'after' if forward else 'before'} the server got it"
    )
    person = await register(client, *programmes(rng))
    body = random_bill(rng, person, f"commit-lost-{operation}")
    if operation == "settle":
        path, payload = "/v1/settlements", body
        trap = proxy.drop_at(lambda sql: "INSERT INTO settlements" in sql, forward=forward)
    else:
        tally.sent(TERMINAL, body)
        response = await proxied.post("/v1/settlements", json=body, headers=COUNTY)
        settlement_id = tally.answered(response.status, await response.json())
        assert response.status == 201
        path = f"/v1/settlements/{settlement_id}/reversal"
        payload = {"request_id": f"rev-{body['request_id']}", "reason": "commit lost"}
        trap = proxy.drop_at(is_commit, forward=forward, after=lambda sql: "INSERT INTO reversals" in sql)

    tally.sent(TERMINAL, payload)
    response = await proxied.post(path, json=payload, headers=COUNTY)
    problem = await response.json()
    tally.answered(response.status, problem)
    assert trap.sprung.is_set(), "the committing statement never went through the proxy: has its SQL changed?"
    assert trap.message_type == ("B" if operation == "settle" else "Q"), trap.sql
    assert response.status == 503, problem
    assert problem["code"] == "database_unavailable"
    assert "retry with the same request id" in problem["title"]
    assert int(response.headers["Retry-After"]) >= 1

    await asyncio.wait_for(trap.finished.wait(), timeout=10)  # the server has finished with the COMMIT
    found = await stored(pool, operation, TERMINAL, payload["request_id"])
    assert len(found) == (1 if forward else 0), [dict(row) for row in found]
    assert_whole(found, operation)

    tally.sent(TERMINAL, payload)
    retry = await proxied.post(path, json=payload, headers=COUNTY)
    answer = await retry.json()
    acknowledged = tally.answered(retry.status, answer)
    if forward:
        assert (retry.status, retry.headers["Idempotent-Replayed"]) == (200, "true"), answer
        assert acknowledged == found[0]["id"]
    else:
        assert (retry.status, retry.headers["Idempotent-Replayed"]) == (201, "false"), answer
    final = await stored(pool, operation, TERMINAL, payload["request_id"])
    assert [row["id"] for row in final] == [acknowledged]
    assert_whole(final, operation)

    outcome = await settle_up(pool, tally)
    assert outcome.lost == []
    assert outcome.double_counted == []
    assert outcome.violations == []
    assert tally.internal_errors == 0
