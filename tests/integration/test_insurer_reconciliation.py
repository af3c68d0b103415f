"""Three-way reconciliation beside the insurer's core (docs/insurer.md, "Reconciling with the insurer"), against the
bundled simulator over real HTTP on 127.0.0.1: a clean day reconciles clean; each discrepancy, made to happen for
real at the simulator or by a fault point, is named with its repair, and once repaired the day is clean again; a
message the insurer commits after midnight counts on its day; the clinic's list is compared as the existing
reconciliation compares it; and ``medsettle reconcile insurer`` says the same."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters.insurer import protocol
from adapters.insurer.client import InsurerConfig, open_client
from adapters.insurer.protocol import settle_input
from adapters.insurer.simulator import SimulatorServer, start_simulator
from adapters.policy_files import load_policy_book
from gateway.app_keys import service_key
from gateway.insurer import visit_of
from gateway.service import china_today
from settlement.models import Bill, LineItem
from tests.integration.conftest import ADMIN, COUNTY, SignedClient, bill, fresh_national_id, own_gateway
from tests.integration.processes import medsettle
from tests.integration.test_insurer import TIMEOUT_MS, Y, fast_policy

pytestmark = pytest.mark.integration

FINANCE = {"X-Terminal-Id": "finance-1"}
INSTITUTION = "H33042400001"  # the example policy's institution code at the insurer
NAMED = ("insurance", "veteran_subsidy", "hardship_aid")


class Day:
    """A gateway beside a simulated insurer, and what a test settles through it."""

    def __init__(self, client: SignedClient, pool: asyncpg.Pool, url: str, insurer: SimulatorServer, folder: Path):
        self.client = client
        self.pool = pool
        self.url = url
        self.insurer = insurer
        self.folder = folder

    @property
    def service(self) -> Any:
        return self.client.client.server.app[service_key]

    async def settle(self, *, amount: int = 2_000 * Y) -> dict[str, Any]:
        person = fresh_national_id()
        response = await self.client.post(
            "/v1/people",
            json={
                "person_id": person,
                "memberships": [{"programme": "insurance", "code": "resident", "effective_from": "2026-01-01"}],
            },
            headers=ADMIN,
        )
        assert response.status == 201, await response.text()
        body = bill(person, ("A", amount))
        response = await self.client.post("/v1/settlements", json=body, headers=COUNTY)
        return {"status": response.status, "answer": await response.json(), "body": body}

    async def reverse(self, settlement_id: str) -> int:
        response = await self.client.post(
            f"/v1/settlements/{settlement_id}/reversal",
            json={"request_id": f"rev-{uuid.uuid4().hex}", "reason": "billed twice"},
            headers=COUNTY,
        )
        return response.status

    async def reconcile(self, day: dt.date, clinic_list: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"day": day.isoformat()}
        if clinic_list is not None:
            body["clinic_list"] = clinic_list
        response = await self.client.post("/v1/finance/reconciliation/insurer", json=body, headers=FINANCE)
        assert response.status == 200, await response.text()
        report: dict[str, Any] = await response.json()
        return report

    def held_at_insurer(self, request_id: str) -> Any:
        """The simulator's settlement in force for a bill the gateway sent."""
        visit = visit_of("term-C001", request_id)
        (held,) = [
            s for s in self.insurer.simulator.state().settlements if s.mdtrt_id == visit and s.state == "settled"
        ]
        return held


@contextlib.asynccontextmanager
async def beside_the_insurer(database_url: str, settings: Any, folder: Path, **changes: Any) -> AsyncIterator[Day]:
    async with (
        await start_simulator(load_policy_book(folder)) as insurer,
        own_gateway(database_url, settings, policy_dir=folder, insurer_url=insurer.url, **changes) as (
            client,
            pool,
            url,
        ),
    ):
        yield Day(client, pool, url, insurer, folder)


@pytest.fixture(scope="module")
async def county(database_url: str, settings: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Day]:
    async with beside_the_insurer(database_url, settings, fast_policy(tmp_path_factory.mktemp("threeway"))) as day:
        yield day


def clinic_line(answer: dict[str, Any], *, reversed_: bool = False) -> dict[str, Any]:
    """A line of the clinic's list, as its HIS recorded the gateway's answer."""
    other = {payer["fund"]: payer["amount"] for payer in answer["payers"] if payer["fund"] not in NAMED}
    return {
        "settlement_id": answer["settlement_id"],
        "total": answer["total"],
        **{name: answer[name] for name in NAMED},
        "out_of_pocket": answer["out_of_pocket"],
        "other_funds": {code: amount for code, amount in other.items() if amount},
        "reversed": reversed_,
        "request_id": answer["request_id"],
    }


def kinds(found: list[dict[str, Any]]) -> list[str]:
    return sorted(item["kind"] for item in found)


def insurer_client(insurer: SimulatorServer) -> Any:
    """A client of the insurer's own, as another system at the hospital (or the insurer's own client) would be."""
    config = InsurerConfig(
        base_url=insurer.url, institution_code=INSTITUTION, institution_name="other", area_code="330424"
    )
    return open_client(config, connections=2)


def foreign_message_id(sequence: int) -> str:
    # Sequences 9900-9999 are never the gateway's (it cycles 0-8999) nor, unless a thousand sign-ins come in one
    # second, a sign-in's (9000 upward).
    return protocol.message_id(INSTITUTION, dt.datetime.now(protocol.CHINA_TIME), 9900 + sequence)


async def test_a_clean_day_reconciles_clean_and_the_clinics_list_is_compared(county: Day) -> None:
    today = china_today()
    settled = [await county.settle(amount=amount) for amount in (2_000 * Y, 3_000 * Y, 4_000 * Y)]
    assert [s["status"] for s in settled] == [201, 201, 201], settled
    first, second, third = (s["answer"] for s in settled)
    assert await county.reverse(third["settlement_id"]) == 201
    if china_today() != today:
        pytest.skip("the China date changed during the test")

    report = await county.reconcile(today)
    assert report["clean"] and report["balanced"], report
    assert report["discrepancies"] == [] and report["clinic"] is None
    assert report["matched_count"] >= 2
    assert report["insurer"] == report["gateway"]
    assert [fund["code"] for fund in report["funds"]] == ["insurance", "critical_illness"]
    assert [fund["fund_type"] for fund in report["funds"]] == ["390100", "390200"]

    # The clinic's own list of its bills: exactly the gateway's, then one bill left out and one amount wrong.
    full = [clinic_line(first), clinic_line(second), clinic_line(third, reversed_=True)]
    report = await county.reconcile(today, full)
    assert report["clean"] and report["clinic_discrepancies"] == [], report
    assert report["clinic"] == report["gateway"]

    wrong = clinic_line(second) | {
        "insurance": second["insurance"] - 100,
        "out_of_pocket": second["out_of_pocket"] + 100,
    }
    report = await county.reconcile(today, [wrong, clinic_line(third, reversed_=True)])
    assert report["discrepancies"] == [] and not report["clean"]
    about = {d["kind"]: d for d in report["clinic_discrepancies"]}
    assert set(about) == {"missing_at_clinic", "amount_differs"}, report["clinic_discrepancies"]
    assert about["missing_at_clinic"]["settlement_id"] == first["settlement_id"]
    assert about["missing_at_clinic"]["request_id"] == first["request_id"]
    differs = [d for d in report["clinic_discrepancies"] if d["kind"] == "amount_differs"]
    assert [(d["field"], d["gateway"], d["submitted"]) for d in differs] == [
        ("insurance", second["insurance"], second["insurance"] - 100),
        ("out_of_pocket", second["out_of_pocket"], second["out_of_pocket"] + 100),
    ]
    assert all(d["repair"] for d in report["clinic_discrepancies"])

    # The command line says the same: JSON clean (exit 0); the wrong list as a table (exit 1), each with its repair.
    environment = {"MEDSETTLE_POLICY_DIR": str(county.folder), "MEDSETTLE_INSURER_URL": county.insurer.url}
    done = await asyncio.to_thread(
        medsettle, county.url, "reconcile", "insurer", "--day", today.isoformat(), "--format", "json", **environment
    )
    assert done.returncode == 0, done.stdout + done.stderr
    printed = json.loads(done.stdout)
    assert printed["clean"] and printed["gateway"] == printed["insurer"]
    listed = county.folder.parent / "clinic-list.json"
    listed.write_text(json.dumps([wrong, clinic_line(third, reversed_=True)]), encoding="utf-8")
    done = await asyncio.to_thread(
        medsettle, county.url, "reconcile", "insurer", "--day", today.isoformat(), "--clinic-list", str(listed),
        "--clinic", "C001", **environment,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "The insurer's 3201: balanced" in done.stdout
    assert "missing_at_clinic" in done.stdout and "amount_differs" in done.stdout and "repair:" in done.stdout


async def test_a_message_committed_after_midnight_counts_on_the_insurers_day(county: Day) -> None:
    today = china_today()
    tomorrow = today + dt.timedelta(days=1)
    just_after = dt.datetime.combine(tomorrow, dt.time(0, 0, 1), tzinfo=protocol.CHINA_TIME)
    county.insurer.simulator.clock = lambda: just_after
    try:
        late = await county.settle()
    finally:
        county.insurer.simulator.clock = lambda: dt.datetime.now(protocol.CHINA_TIME)
    assert late["status"] == 201, late
    if china_today() != today:
        pytest.skip("the China date changed during the test")
    async with county.pool.acquire() as connection:
        message_id = await connection.fetchval(
            "SELECT message_id FROM insurer_messages WHERE settlement_id = $1",
            uuid.UUID(late["answer"]["settlement_id"]),
        )

    # Sent today, committed by the insurer tomorrow: not today's, and named on today's report...
    on_today = await county.reconcile(today)
    assert on_today["clean"] and on_today["balanced"], on_today
    crossed = [c for c in on_today["crossed_midnight"] if c["message_id"] == message_id]
    assert [c["reconciled_on"] for c in crossed] == [tomorrow.isoformat()]
    # ...and tomorrow's, where it is matched, and where the insurer's 3201 counts it too.
    on_tomorrow = await county.reconcile(tomorrow)
    assert on_tomorrow["clean"] and on_tomorrow["balanced"], on_tomorrow
    assert [c["message_id"] for c in on_tomorrow["crossed_midnight"]] == [message_id]
    assert on_tomorrow["matched_count"] == on_tomorrow["insurer"]["settlements"] == 1
    assert on_tomorrow["gateway"]["funds"]["insurance"] == late["answer"]["insurance"]


async def test_each_discrepancy_with_the_insurer_is_named_with_its_repair_and_repaired(
    database_url: str, settings: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = fast_policy(tmp_path_factory.mktemp("threeway-faults"))
    faults = "insurer.after_answer=raise@1,reverse.before_commit=raise@1"
    async with beside_the_insurer(database_url, settings, folder, faults=faults) as county:
        service = county.service
        service.sweeper.link_for = lambda: None  # no background sweeping until the test says so
        today = china_today()

        # 1. The insurer settles, the gateway loses its database before booking: an orphan the sweeper will undo.
        lost = await county.settle()
        assert lost["status"] == 503, lost
        # 2. A settlement made at the insurer with a message this gateway never sent: an orphan nobody will undo.
        person_number = "0f" * 15
        stranger = Bill(
            clinic_level="county",
            visit_type="inpatient",
            service_date=dt.date(2026, 5, 1),
            items=(LineItem(code="ITEM-0", name="item 0", category="A", amount=1_500 * Y),),
        )
        async with insurer_client(county.insurer) as client:
            orphan = await client.settle(
                foreign_message_id(1), settle_input(stranger, psn_no=person_number, mdtrt_id="elsewhere:1")
            )
            # 3. A settlement booked here, then cancelled at the insurer by someone else: missing at the insurer.
            refunded = await county.settle()
            assert refunded["status"] == 201, refunded
            held = county.held_at_insurer(refunded["body"]["request_id"])
            refund_id = foreign_message_id(2)
            await client.cancel(
                refund_id,
                visit_type="inpatient",
                insurer_settlement_id=held.setl_id,
                mdtrt_id=held.mdtrt_id,
                psn_no=held.psn_no,
            )
        # 4. A reversal whose cancel the insurer confirmed, but whose local half failed: half done.
        halfway = await county.settle()
        assert halfway["status"] == 201, halfway
        assert await county.reverse(halfway["answer"]["settlement_id"]) == 503
        if china_today() != today:
            pytest.skip("the China date changed during the test")

        report = await county.reconcile(today)
        assert not report["clean"] and not report["balanced"], report
        assert kinds(report["discrepancies"]) == [
            "cancelled_at_insurer_only",
            "missing_at_insurer",
            "missing_here",
            "missing_here",
        ], report["discrepancies"]
        found = {(d["kind"], d["message_id"]): d for d in report["discrepancies"]}
        async with county.pool.acquire() as connection:
            lost_id = await connection.fetchval(
                "SELECT message_id FROM insurer_messages WHERE request_id = $1", lost["body"]["request_id"]
            )
        open_orphan = found["missing_here", lost_id]
        assert open_orphan["message_state"] == "answered" and open_orphan["sweeper_will_undo"]
        assert "the sweeper will cancel it (2305)" in open_orphan["repair"]
        closed_orphan = found["missing_here", orphan.msgid]
        assert closed_orphan["message_state"] is None and not closed_orphan["sweeper_will_undo"]
        assert closed_orphan["insurer_paid"]["insurance"] == orphan.paid_by_fund_type["390100"]
        assert f"setl_id {orphan.insurer_settlement_id}" in closed_orphan["repair"]
        (missing,) = [d for d in report["discrepancies"] if d["kind"] == "missing_at_insurer"]
        assert missing["settlement_id"] == refunded["answer"]["settlement_id"]
        assert (missing["insurer_state"], missing["cancelled_by"]) == ("cancelled", refund_id)
        assert missing["gateway_paid"]["insurance"] == refunded["answer"]["insurance"]
        assert f"/v1/settlements/{refunded['answer']['settlement_id']}/reversal" in missing["repair"]
        (half,) = [d for d in report["discrepancies"] if d["kind"] == "cancelled_at_insurer_only"]
        assert half["settlement_id"] == halfway["answer"]["settlement_id"]
        assert half["cancel_state"] == "answered" and half["sweeper_will_reverse"]
        # The totals differ as the discrepancies say: the insurer holds the two orphans, the gateway the refunded
        # and the half-reversed bills.
        assert report["insurer"]["settlements"] == 2 and report["gateway"]["settlements"] == 2

        # Each repair, as named: the sweeper finishes what it said it would; the refund is reversed here; the
        # stranger's settlement is cancelled at the insurer.
        service.sweeper.link_for = service.insurer_link
        await asyncio.sleep(1.1 + 3 * TIMEOUT_MS / 1000)  # past the grace
        assert await service.sweeper.sweep() == 2
        assert await county.reverse(refunded["answer"]["settlement_id"]) == 201
        async with insurer_client(county.insurer) as client:
            await client.cancel(
                foreign_message_id(3),
                visit_type="inpatient",
                insurer_settlement_id=orphan.insurer_settlement_id,
                mdtrt_id="elsewhere:1",
                psn_no=person_number,
            )
        repaired = await county.reconcile(today)
        assert repaired["clean"] and repaired["balanced"], repaired
        assert (
            repaired["insurer"]
            == repaired["gateway"]
            == {
                "settlements": 0,
                "total": 0,
                "funds": {"insurance": 0, "critical_illness": 0},
            }
        )
