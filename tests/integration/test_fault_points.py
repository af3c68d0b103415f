"""A failure at each named fault point of a settlement and a reversal, then a retry with the same request id.

``kill``: a real ``medsettle serve`` process SIGKILLs itself at the point (``MEDSETTLE_FAULTS``),
so the terminal's connection drops with no answer. A gateway without faults then gets the
retry. Right after the crash the database holds the settlement (or reversal) whole or not
at all; the retry settles it once (201) when the crash came before the commit, and replays
the committed answer (200, replayed, same id) when it came after.

``raise``: the in-process gateway meets a connection error at the point (cheaper, no
process). Before the commit: 503 with Retry-After and no row written; after the commit:
503 as well (the terminal cannot know it committed), and the retry replays the stored answer.

Each scenario prints its counts (``fault_tally.settle_up``) and ends with every invariant
of ``medsettle check`` plus "nothing acknowledged is missing".
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters.faults import POINTS as ALL_POINTS
from adapters.terminal_client import TerminalClient
from gateway.app_keys import service_key
from tests.integration.conftest import COUNTY, register, row_counts
from tests.integration.fault_tally import Tally, assert_whole, programmes, random_bill, settle_up, stored
from tests.integration.processes import free_port, start_gateway, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.fault]

# The settle and reversal paths of the default policy; insurer.after_answer is reached only beside an insurer's
# core, and tests/integration/test_insurer.py drives it.
POINTS = tuple(point for point in ALL_POINTS if not point.startswith("insurer."))

TERMINAL = "term-C001"
CONNECTION_ERRORS = (TimeoutError, aiohttp.ClientConnectionError)


@pytest.fixture(scope="module")
async def clean_gateway(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A ``medsettle serve`` without faults: it settles before a reversal is killed, and takes the retries."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_gateway(database_url, port, tmp_path_factory.mktemp("clean"))
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base, process)
        yield base
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


@pytest.mark.parametrize("point", POINTS)
async def test_killed_at_a_fault_point_then_the_retry_settles_once(
    point, client, pool, database_url, tmp_path: Path, clean_gateway, rng
):
    operation, _, moment = point.partition(".")
    committed = moment == "after_commit"
    tally = Tally(f"kill at {point}")
    person = await register(client, *programmes(rng))
    body = random_bill(rng, person, f"kill-{point}")
    key = client.by_terminal[TERMINAL]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    faulty: subprocess.Popen[str] | None = None
    try:
        async with aiohttp.ClientSession() as session:
            clean = TerminalClient(clean_gateway, key.key_id, key.secret, session=session, attempts=1)
            doomed = TerminalClient(base, key.key_id, key.secret, session=session, attempts=1, timeout=20)
            faulty = start_gateway(database_url, port, tmp_path / "faulty", MEDSETTLE_FAULTS=f"{point}=kill")
            if operation == "settle":
                path, payload = "/v1/settlements", body
            else:
                tally.sent(TERMINAL, body)
                reply = await clean.request("POST", "/v1/settlements", body, retry=False)
                settlement_id = tally.answered(reply.status, reply.body)
                assert reply.status == 201, reply.body
                path = f"/v1/settlements/{settlement_id}/reversal"
                payload = {"request_id": f"rev-{body['request_id']}", "reason": "fault test"}
            await wait_ready(session, base, faulty)

            tally.sent(TERMINAL, payload)
            with pytest.raises(CONNECTION_ERRORS):
                reply = await doomed.request("POST", path, payload, retry=False)
                tally.answered(reply.status, reply.body)  # only reached if the gateway answered after all
            tally.dropped()
            assert faulty.wait(timeout=15) == -signal.SIGKILL

            # Right after the crash: the settlement (or reversal) is there whole, or not at all.
            after_crash = await stored(pool, operation, TERMINAL, payload["request_id"])
            assert len(after_crash) == (1 if committed else 0), [dict(row) for row in after_crash]
            assert_whole(after_crash, operation)

            tally.sent(TERMINAL, payload)
            retry = await clean.request("POST", path, payload, retry=False)
            acknowledged = tally.answered(retry.status, retry.body)
            if committed:
                assert (retry.status, retry.replayed) == (200, True), retry.body
                assert acknowledged == after_crash[0]["id"]
            else:
                assert (retry.status, retry.replayed) == (201, False), retry.body
            final = await stored(pool, operation, TERMINAL, payload["request_id"])
            assert [row["id"] for row in final] == [acknowledged]
            assert_whole(final, operation)
    finally:
        if faulty is not None:
            if faulty.poll() is None:
                faulty.kill()
            faulty.communicate(timeout=30)

    outcome = await settle_up(pool, tally)
    assert outcome.lost == []
    assert outcome.double_counted == []
    assert outcome.violations == []
    assert tally.internal_errors == 0


@pytest.mark.parametrize("point", POINTS)
async def test_an_error_at_a_fault_point_answers_503_then_the_retry_settles_once(point, client, pool, rng):
    operation, _, moment = point.partition(".")
    committed = moment == "after_commit"
    tally = Tally(f"raise at {point}")
    faults = client.client.app[service_key].store.faults
    person = await register(client, *programmes(rng))
    body = random_bill(rng, person, f"raise-{point}")
    if operation == "settle":
        path, payload = "/v1/settlements", body
    else:
        tally.sent(TERMINAL, body)
        response = await client.post("/v1/settlements", json=body, headers=COUNTY)
        settlement_id = tally.answered(response.status, await response.json())
        assert response.status == 201
        path = f"/v1/settlements/{settlement_id}/reversal"
        payload = {"request_id": f"rev-{body['request_id']}", "reason": "fault test"}

    before = await row_counts(pool)
    faults.arm(point, "raise")
    try:
        tally.sent(TERMINAL, payload)
        response = await client.post(path, json=payload, headers=COUNTY)
    finally:
        faults.disarm()
    problem = await response.json()
    tally.answered(response.status, problem)
    assert response.status == 503, problem
    assert problem["code"] == "database_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    after = await row_counts(pool)
    written = {table: after[table] - before[table] for table in after if after[table] != before[table]}
    if not committed:
        assert written == {}, written
    elif operation == "settle":
        assert written == {"settlements": 1, "ledger_entries": 5} | (
            {"accumulators": 1} if "accumulators" in written else {}
        )
    else:
        assert written == {"reversals": 1, "ledger_entries": 5}

    tally.sent(TERMINAL, payload)
    retry = await client.post(path, json=payload, headers=COUNTY)
    answer = await retry.json()
    acknowledged = tally.answered(retry.status, answer)
    if committed:
        assert (retry.status, retry.headers["Idempotent-Replayed"]) == (200, "true"), answer
        assert answer["replayed"] is True
    else:
        assert (retry.status, retry.headers["Idempotent-Replayed"]) == (201, "false"), answer
    assert [row["id"] for row in await stored(pool, operation, TERMINAL, payload["request_id"])] == [acknowledged]

    outcome = await settle_up(pool, tally)
    assert outcome.lost == []
    assert outcome.double_counted == []
    assert outcome.violations == []
    assert tally.internal_errors == 0
