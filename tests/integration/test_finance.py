"""Finance reporting end to end: daily statements (JSON, CSV, CLI), closed days that never change,
reconciliation with every kind of discrepancy, a clean day confirmed in the audit trail, and a
10,000-settlement day reconciled over HTTP.

Past booking days are filled with synthetic settlements written straight to the tables the way
``adapters/store.py`` writes them (settlement row plus five balanced ledger lines), copied from one
real settlement of a category-C bill: everything is out of pocket, so no accumulator moves (synthetic
people have no accumulators row, which means all zero) and ``medsettle check`` still holds. Each
test uses its own clinic and booking day.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import time
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest

from adapters.reports import Reports
from adapters.settlement_sql import SettlementRow
from gateway.service import china_today
from tests.integration.conftest import ADMIN, bill, register
from tests.integration.test_cli import medsettle

pytestmark = pytest.mark.integration

FINANCE = {"X-Terminal-Id": "finance-1"}
_templates: dict[str, asyncpg.Record] = {}

SETTLEMENT_COLUMNS = list(SettlementRow.__struct_fields__)


async def template(client: Any, pool: asyncpg.Pool) -> asyncpg.Record:
    """One real settlement of a category-C outpatient bill: no payer pays, no accumulator moves."""
    if "row" not in _templates:
        person = await register(client, ("insurance", "resident"))
        response = await client.post(
            "/v1/settlements",
            json=bill(person, ("C", 12_345), clinic_id="V050", visit_type="outpatient", service_date="2026-01-20"),
            headers={"X-Terminal-Id": "term-V050"},
        )
        payload = await response.json()
        assert response.status == 201, payload
        assert payload["out_of_pocket"] == payload["total"] == 12_345
        async with pool.acquire() as connection:
            _templates["row"] = await connection.fetchrow(
                f"SELECT {', '.join(SETTLEMENT_COLUMNS)} FROM settlements WHERE settlement_id = $1",
                uuid.UUID(payload["settlement_id"]),
            )
    return _templates["row"]


async def synthetic_day(
    client: Any,
    pool: asyncpg.Pool,
    *,
    clinic_id: str,
    booked_on: dt.date,
    count: int,
    template_person: bool = False,
    ids: list[uuid.UUID] | None = None,
) -> list[uuid.UUID]:
    """``count`` settlements at ``clinic_id`` booked on ``booked_on``, as the store writes them.

    Each is for a new synthetic person (a realistic spread for the planner) unless ``template_person``,
    which the reversal API needs: it locks the person's accumulators row. ``ids`` chooses their ids.
    """
    row = await template(client, pool)
    created_at = dt.datetime.combine(booked_on, dt.time(10, 0), tzinfo=dt.UTC)
    ids = ids or [uuid.uuid4() for _ in range(count)]
    settlements = []
    people = []
    for settlement_id in ids:
        person_key = row["person_key"] if template_person else os.urandom(32)
        if not template_person:
            people.append((person_key, "synthetic"))
        values = dict(row)
        values.update(
            person_key=person_key,
            settlement_id=settlement_id,
            terminal_id="finance-synthetic",
            request_id=f"syn-{settlement_id.hex}",
            clinic_id=clinic_id,
            booked_on=booked_on,
            created_at=created_at,
        )
        settlements.append(tuple(values[column] for column in SETTLEMENT_COLUMNS))
    async with pool.acquire() as connection, connection.transaction():
        await connection.copy_records_to_table("people", records=people, columns=["person_key", "masked_id"])
        await connection.copy_records_to_table("settlements", records=settlements, columns=SETTLEMENT_COLUMNS)
    return ids


async def synthetic_reversal(pool: asyncpg.Pool, settlement_id: uuid.UUID, booked_on: dt.date) -> None:
    """Reverse a synthetic settlement on ``booked_on``: the reversal row (the ledger shows its negated lines)."""
    reversal_id = uuid.uuid4()
    created_at = dt.datetime.combine(booked_on, dt.time(15, 0), tzinfo=dt.UTC)
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow("SELECT * FROM settlements WHERE settlement_id = $1", settlement_id)
        await connection.execute(
            "INSERT INTO reversals (person_key, reversal_id, settlement_id, terminal_id, request_id, reason,"
            " booked_on, created_at) VALUES ($1, $2, $3, 'finance-synthetic', $4, 'test', $5, $6)",
            row["person_key"],
            reversal_id,
            settlement_id,
            f"syn-rev-{reversal_id.hex}",
            booked_on,
            created_at,
        )
        await connection.execute(
            "UPDATE settlements SET reversed_at = $3, reversal_id = $2 WHERE person_key = $1 AND settlement_id = $4",
            row["person_key"],
            reversal_id,
            created_at,
            settlement_id,
        )


def line(settlement_id: uuid.UUID, total: int = 12_345, **changes: Any) -> dict[str, Any]:
    item = {
        "settlement_id": str(settlement_id),
        "total": total,
        "insurance": 0,
        "veteran_subsidy": 0,
        "hardship_aid": 0,
        "out_of_pocket": total,
        "reversed": False,
    }
    return item | changes


async def daily(client: Any, day: dt.date) -> dict[str, Any]:
    response = await client.get(f"/v1/finance/daily?date={day.isoformat()}", headers=FINANCE)
    payload = await response.json()
    assert response.status == 200, payload
    return payload


# ---------------------------------------------------------------- daily statements


async def test_daily_statement_per_clinic_fund_level_and_region(client, pool, database_url):
    day = dt.date(2026, 2, 4)
    ids = await synthetic_day(client, pool, clinic_id="V070", booked_on=day, count=3)
    statement = await daily(client, day)
    assert statement["date"] == "2026-02-04" and statement["closed"] is True
    (clinic,) = [block for block in statement["by_clinic"] if block["clinic_id"] == "V070"]
    assert clinic["level"] == "village" and clinic["settlements"] == 3 and clinic["reversals"] == 0
    assert clinic["billed_fen"] == clinic["net_fen"] == 3 * 12_345
    assert clinic["funds"]["patient"] == {
        "settlements_count": 3,
        "settlements_fen": 3 * 12_345,
        "reversals_count": 0,
        "reversals_fen": 0,
        "adjustments_count": 0,
        "adjustments_fen": 0,
        "net_fen": 3 * 12_345,
    }
    assert clinic["funds"]["insurance_fund"]["settlements_count"] == 0
    region = next(block for block in statement["by_region"] if block["region"] == clinic["region"])
    level = next(block for block in statement["by_level"] if block["level"] == "village")
    assert region["funds"]["patient"]["net_fen"] >= 3 * 12_345
    assert level["funds"]["patient"]["net_fen"] >= 3 * 12_345
    assert statement["total"]["net_fen"] == sum(block["net_fen"] for block in statement["by_clinic"])

    response = await client.get(f"/v1/finance/daily?date={day.isoformat()}&format=csv", headers=ADMIN)
    text = (await response.read()).decode("utf-8")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert text.startswith("\ufeff机构编码 Clinic ID,机构名称 Clinic,级别 Level,区域 Region,结算笔数 Settlements,")
    assert f"V070,{clinic['name']},村卫生服务站 village,{clinic['region']},3,0,370.35,0.00,370.35," in text

    result = medsettle(database_url, "report", "daily", "--date", "2026-02-04", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout == text.replace("\r\n", "\n")  # the subprocess is read in text mode
    assert ids  # used below through the statement only


async def test_closed_day_never_changes_and_a_later_reversal_shows_on_its_own_day(client, pool):
    day = dt.date(2026, 2, 6)
    ids = await synthetic_day(client, pool, clinic_id="V071", booked_on=day, count=2, template_person=True)
    yesterday = china_today() - dt.timedelta(days=1)
    closed_before = await daily(client, day)
    yesterday_before = await daily(client, yesterday)

    # Settle today and reverse one of the closed day's settlements today.
    person = await register(client, ("insurance", "resident"))
    response = await client.post(
        "/v1/settlements",
        json=bill(person, ("A", 50_000), clinic_id="V071", visit_type="outpatient", service_date="2026-03-01"),
        headers={"X-Terminal-Id": "term-V071"},
    )
    assert response.status == 201, await response.text()
    response = await client.post(
        f"/v1/settlements/{ids[0]}/reversal",
        json={"request_id": f"rev-{uuid.uuid4().hex}", "reason": "billing error"},
        headers={"X-Terminal-Id": "term-V071"},
    )
    assert response.status == 201, await response.text()

    assert await daily(client, day) == closed_before
    assert await daily(client, yesterday) == yesterday_before
    today = await daily(client, china_today())
    assert today["closed"] is False
    (reversal,) = [item for item in today["reversals"] if item["settlement_id"] == str(ids[0])]
    assert reversal["service_date"] == "2026-01-20" and reversal["settled_on"] == "2026-02-06"
    assert reversal["clinic_id"] == "V071" and reversal["total_fen"] == 12_345 and reversal["reason"] == "billing error"
    (clinic,) = [block for block in today["by_clinic"] if block["clinic_id"] == "V071"]
    assert clinic["reversals"] == 1 and clinic["funds"]["patient"]["reversals_fen"] == 12_345
    assert clinic["settlements"] == 1 and clinic["billed_fen"] == 50_000

    # The closed day still reconciles as it closed: the reversal was booked later.
    response = await client.post(
        "/v1/finance/reconciliation",
        json={"date": "2026-02-06", "clinic_id": "V071", "settlements": [line(i) for i in ids]},
        headers=FINANCE,
    )
    assert (await response.json())["clean"] is True


async def test_daily_statement_roles_and_bad_date(client):
    assert (await client.get("/v1/finance/daily?date=2026-02-04", headers={"X-Terminal-Id": "term-V070"})).status == 403
    response = await client.get("/v1/finance/daily?date=yesterday", headers=FINANCE)
    assert response.status == 422 and (await response.json())["field"] == "date"


# ---------------------------------------------------------------- reconciliation


async def test_every_kind_of_discrepancy_is_named(client, pool):
    day = dt.date(2026, 2, 2)
    same, differs, clinic_missing, gateway_reversed, clinic_reversed = await synthetic_day(
        client, pool, clinic_id="V052", booked_on=day, count=5
    )
    await synthetic_reversal(pool, gateway_reversed, day)
    unknown = uuid.uuid4()
    submitted = [
        line(unknown, total=999, request_id="clinic-own-7"),
        line(differs, insurance=100, out_of_pocket=12_245),
        line(clinic_reversed, reversed=True),
        line(gateway_reversed),
        line(same),
    ]
    response = await client.post(
        "/v1/finance/reconciliation",
        json={"date": "2026-02-02", "clinic_id": "V052", "settlements": submitted},
        headers=FINANCE,
    )
    result = await response.json()
    assert response.status == 200, result
    assert result["clean"] is False and result["confirmed"] is False
    assert result["matched_count"] == 1 and result["matched_sums_fen"]["total"] == 12_345
    assert result["gateway_count"] == 5 and result["submitted_count"] == 5
    found = {(item["kind"], item["settlement_id"], item.get("field")) for item in result["discrepancies"]}
    assert found == {
        ("missing_at_gateway", str(unknown), None),
        ("missing_at_clinic", str(clinic_missing), None),
        ("amount_differs", str(differs), "insurance"),
        ("amount_differs", str(differs), "out_of_pocket"),
        ("reversed_at_gateway_only", str(gateway_reversed), None),
        ("reversed_at_clinic_only", str(clinic_reversed), None),
    }
    insurance = next(item for item in result["discrepancies"] if item.get("field") == "insurance")
    assert insurance["gateway"] == 0 and insurance["submitted"] == 100
    # Each names the clinic's own request id beside the settlement id: the gateway's stored one, or the
    # list's for a settlement the gateway does not have.
    assert {item["settlement_id"]: item["request_id"] for item in result["discrepancies"]} == {
        str(unknown): "clinic-own-7",
        **{str(known): f"syn-{known.hex}" for known in (clinic_missing, differs, gateway_reversed, clinic_reversed)},
    }
    assert result["discrepancy_counts"]["amount_differs"] == 2
    assert result["gateway_sums_fen"]["total"] == 4 * 12_345  # the reversed one is not counted

    # A fund-level submission compares only that fund's settlements and field.
    response = await client.post(
        "/v1/finance/reconciliation",
        json={"date": "2026-02-02", "fund": "insurance_fund", "settlements": [line(differs, insurance=100)]},
        headers=FINANCE,
    )
    result = await response.json()
    assert [(item["kind"], item["settlement_id"]) for item in result["discrepancies"]] == [
        ("missing_at_gateway", str(differs))
    ]


async def test_clean_day_is_confirmed_and_audited(client, pool):
    day = dt.date(2026, 2, 5)
    ids = await synthetic_day(client, pool, clinic_id="V053", booked_on=day, count=4)
    response = await client.post(
        "/v1/finance/reconciliation",
        json={"date": "2026-02-05", "clinic_id": "V053", "settlements": [line(i) for i in reversed(ids)]},
        headers={"X-Terminal-Id": "term-V053"},  # a terminal reconciles its own clinic
    )
    result = await response.json()
    assert response.status == 200, result
    assert result["clean"] is True and result["confirmed"] is True and result["discrepancies"] == []
    assert result["matched_count"] == 4 and result["matched_sums_fen"]["out_of_pocket"] == 4 * 12_345
    async with pool.acquire() as connection:
        audit = await connection.fetchrow(
            "SELECT actor, subject, details FROM audit_log WHERE action = 'reconciliation.confirmed'"
            " AND subject = '2026-02-05 V053 *' ORDER BY audit_id DESC LIMIT 1"
        )
    assert audit["actor"] == "term-V053"
    assert '"matched_count": 4' in audit["details"] and '"total": 49380' in audit["details"]

    # The dashboard's reconciliation status for that day: V053 confirmed, a clinic with business but no
    # reconciliation not.
    await synthetic_day(client, pool, clinic_id="V054", booked_on=day, count=2)
    status = {row.clinic_id: row for row in await Reports(pool).reconciliation_status(day)}
    assert status["V053"].confirmed is True and status["V053"].settlements == 4
    assert status["V054"].confirmed is False and status["V054"].settlements >= 2


async def test_reconciliation_refusals(client):
    body = {"date": "2026-02-05", "clinic_id": "V053", "settlements": []}
    response = await client.post("/v1/finance/reconciliation", json=body, headers={"X-Terminal-Id": "term-V001"})
    assert response.status == 403  # another clinic's terminal
    response = await client.post(
        "/v1/finance/reconciliation", json=body | {"fund": "aid_fund"}, headers={"X-Terminal-Id": "term-V053"}
    )
    assert response.status == 403  # a terminal cannot submit for a fund
    response = await client.post("/v1/finance/reconciliation", json=body | {"fund": "nope"}, headers=FINANCE)
    problem = await response.json()
    assert response.status == 422 and problem["field"] == "fund" and problem["code"] == "unknown_fund"
    # A fund is named by its ledger account or by its code.
    empty_day = {"date": "2026-01-03", "settlements": [], "fund": "hardship_aid"}
    response = await client.post("/v1/finance/reconciliation", json=empty_day, headers=FINANCE)
    result = await response.json()
    assert response.status == 200 and (result["fund"], result["fund_code"]) == ("aid_fund", "hardship_aid")
    twice = str(uuid.uuid4())
    response = await client.post(
        "/v1/finance/reconciliation", json=body | {"settlements": [line(twice), line(twice)]}, headers=FINANCE
    )
    assert response.status == 422 and (await response.json())["field"] == "settlements"


async def test_ten_thousand_settlement_day_reconciles_in_seconds(client, pool):
    day = dt.date(2026, 2, 3)
    started = time.perf_counter()
    ids = await synthetic_day(client, pool, clinic_id="V054", booked_on=day, count=10_000)
    print(f"inserted 10,000 synthetic settlements in {time.perf_counter() - started:.2f} s")
    body = {"date": "2026-02-03", "clinic_id": "V054", "settlements": [line(i) for i in ids]}
    started = time.perf_counter()
    response = await client.post(
        "/v1/finance/reconciliation",
        data=io.BytesIO(msgspec.json.encode(body)),  # bytes over 1 MB make aiohttp warn; a stream does not
        headers=FINANCE | {"Content-Type": "application/json"},
    )
    result = await response.json()
    elapsed = time.perf_counter() - started
    print(f"reconciled 10,000 settlements ({len(msgspec.json.encode(body)):,} bytes) over HTTP in {elapsed:.2f} s")
    assert response.status == 200, result
    assert result["clean"] is True and result["matched_count"] == 10_000
    assert result["matched_sums_fen"]["total"] == 10_000 * 12_345
    # "In seconds" is the gateway's own request deadline (10 s): past it the answer is a 503, which the status
    # assertion catches. The time is printed, not judged: 0.25 s on a quiet machine, more on a loaded one.
