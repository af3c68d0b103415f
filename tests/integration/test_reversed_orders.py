"""A reversal and the orders re-adjudication wrote for the bill it reverses (issue 17).

The reversal takes back the adjustments booked on its bill; the orders that hold their money must follow:
an open order is cancelled in the reversal's own transaction (finance can no longer pay it) and the
re-adjudication the reversal queued re-issues what is still owed of it; an order already paid stays paid and
what was taken back shows as a new order; an overpayment that was only reported goes with its bill, and is
never paid back to the patient.

The bills are tests.integration.test_readjudication's county stays; 低保 aid on each, worked by hand in
tests/integration/test_adjustment_reports.py (the third: 12,080.00 eligible, 8,610.00 insurance, 70 % of the
3,470.00 left).
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from adapters.check import check_invariants
from gateway.app_keys import service_key
from tests.integration.conftest import ADMIN, COUNTY, SignedClient, own_gateway, register
from tests.integration.test_readjudication import (
    STAYS,
    change_registry,
    key_of,
    memberships,
    paid_now,
    readjudicated,
    settle_stays,
)

pytestmark = pytest.mark.integration

AID = (190_400, 216_650, 242_900)  # each stay's 低保 aid


async def reverse(client: SignedClient, settlement_id: str) -> None:
    response = await client.post(
        f"/v1/settlements/{settlement_id}/reversal",
        json={"request_id": f"refund-{settlement_id}", "reason": "refund"},
        headers=COUNTY,
    )
    assert response.status == 201, await response.text()


async def orders_of(pool: asyncpg.Pool, person: str) -> list[dict[str, Any]]:
    """The person's orders, oldest first, with the re-adjudication that wrote each."""
    rows = await pool.fetch(
        """SELECT o.order_id, o.readjudication_id, r.cause_kind, o.fund, o.kind, o.amount, o.status,
                  o.cancelled_by, o.cancel_reason
           FROM adjustment_orders o JOIN readjudications r USING (person_key, readjudication_id)
           WHERE o.person_key = $1 ORDER BY o.readjudication_id, o.fund""",
        key_of(person),
    )
    return [dict(row) for row in rows]


def summary(orders: list[dict[str, Any]]) -> list[tuple[str, str, int, str]]:
    return [(order["cause_kind"], order["kind"], order["amount"], order["status"]) for order in orders]


async def test_an_open_order_is_cancelled_by_the_reversal_and_what_is_still_owed_re_issued(
    client: SignedClient, pool: asyncpg.Pool
) -> None:
    person = await register(client, ("insurance", "resident"))
    first, second, third = await settle_stays(client, person, STAYS[:3])
    await change_registry(client, person, memberships(aid="2026-01-01"))
    await readjudicated(pool, person)
    assert summary(await orders_of(pool, person)) == [("registry", "payable", sum(AID), "open")]

    await reverse(client, third["settlement_id"])
    # Cancelled in the reversal's transaction, before any re-adjudication runs: finance can no longer pay it.
    (granted,) = await orders_of(pool, person)
    reversal_work = await pool.fetchval(
        "SELECT readjudication_id FROM readjudications WHERE person_key = $1 AND cause_kind = 'reversal'",
        key_of(person),
    )
    assert (granted["status"], granted["cancelled_by"]) == ("cancelled", reversal_work)
    assert third["settlement_id"] in granted["cancel_reason"]
    response = await client.post(
        f"/v1/finance/adjustments/{granted['order_id']}/close", json={"reference": "TRANSFER-1"}, headers=ADMIN
    )
    assert response.status == 409 and (await response.json())["code"] == "order_not_open"

    # The reversal's re-adjudication re-issues what the other two stays are still owed.
    await readjudicated(pool, person)
    assert summary(await orders_of(pool, person)) == [
        ("registry", "payable", sum(AID), "cancelled"),
        ("reversal", "payable", AID[0] + AID[1], "open"),
    ]
    # Reversing the second cancels the re-issued order in turn, and the first stay's aid is what is left.
    await reverse(client, second["settlement_id"])
    await readjudicated(pool, person)
    orders = await orders_of(pool, person)
    assert summary(orders) == [
        ("registry", "payable", sum(AID), "cancelled"),
        ("reversal", "payable", AID[0] + AID[1], "cancelled"),
        ("reversal", "payable", AID[0], "open"),
    ]
    assert orders[1]["cancelled_by"] == orders[2]["readjudication_id"]
    # What finance may still pay is what the bills still standing are owed.
    assert (await paid_now(pool, first["settlement_id"]))["hardship_aid"] == AID[0]
    assert sum(order["amount"] for order in orders if order["status"] == "open") == AID[0]
    async with pool.acquire() as connection:
        assert await check_invariants(connection) == []  # orders = adjustments + what was carried


async def test_a_paid_order_stays_paid_and_the_reversal_reports_what_it_took_back(
    client: SignedClient, pool: asyncpg.Pool
) -> None:
    person = await register(client, ("insurance", "resident"))
    (stay,) = await settle_stays(client, person, STAYS[:1])
    await change_registry(client, person, memberships(aid="2026-01-01"))
    await readjudicated(pool, person)
    (granted,) = await orders_of(pool, person)
    response = await client.post(
        f"/v1/finance/adjustments/{granted['order_id']}/close", json={"reference": "TRANSFER-2"}, headers=ADMIN
    )
    assert response.status == 200, await response.text()

    await reverse(client, stay["settlement_id"])
    await readjudicated(pool, person)
    # The aid left the fund; the bill it was for is refunded: the patient now holds it, reported to finance.
    assert summary(await orders_of(pool, person)) == [
        ("registry", "payable", AID[0], "paid"),
        ("reversal", "overpayment", AID[0], "reported"),
    ]


async def test_a_reported_overpayment_goes_with_its_bill_and_is_never_paid_back(
    client: SignedClient, pool: asyncpg.Pool
) -> None:
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    _, june = await settle_stays(client, person, STAYS[:2])
    assert june["hardship_aid"] == AID[1]
    await change_registry(client, person, memberships(aid="2026-01-01", struck_off_on="2026-06-01"))
    await readjudicated(pool, person)
    assert summary(await orders_of(pool, person)) == [("registry", "overpayment", AID[1], "reported")]

    # Refunding the June stay takes back its correction (the fund pays the aid back, the patient less), but
    # the patient never paid that overpayment back: no order may pay them for it.
    await reverse(client, june["settlement_id"])
    _, reversal = await readjudicated(pool, person)
    assert reversal["status"] == "done" and json.loads(reversal["carried"]) == {"hardship_aid": -AID[1]}
    assert summary(await orders_of(pool, person)) == [("registry", "overpayment", AID[1], "reported")]
    assert all(value == 0 for value in (await paid_now(pool, june["settlement_id"])).values())


async def test_the_books_hold_while_a_reversal_waits_for_its_re_adjudication(database_url: str, settings: Any) -> None:
    # The reversal takes its bill's adjustments back at once, under the re-adjudication it queues, and that
    # re-adjudication writes finance's orders for them when it runs. Until it has, the books are not wrong,
    # only not finished: the check judges the re-adjudications that are done (a load run checked right after
    # its last reversal found one "broken" that way), and judges this one once it is.
    async with own_gateway(database_url, settings, readjudicate_per_second=0) as (client, pool, _):
        runner = client.client.server.app[service_key].readjudication
        person = await register(client, ("insurance", "resident"))
        (settled,) = await settle_stays(client, person, STAYS[:1])
        await change_registry(client, person, memberships(aid="2026-01-01"))
        assert [outcome.adjusted for outcome in await runner.drain(10)] == [1]
        assert (await paid_now(pool, settled["settlement_id"]))["hardship_aid"] == AID[0]

        await reverse(client, settled["settlement_id"])
        waiting = await pool.fetchval(
            "SELECT count(*) FROM readjudications WHERE person_key = $1 AND status = 'pending'", key_of(person)
        )
        assert waiting == 1
        async with pool.acquire() as connection:
            assert await check_invariants(connection) == []

        assert len(await runner.drain(10)) == 1
        async with pool.acquire() as connection:
            assert await check_invariants(connection) == []
        assert [order["status"] for order in await orders_of(pool, person)] == ["cancelled"]
