"""The settlement API end to end: real HTTP, real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import uuid

import msgspec
import pytest

from adapters import identity
from tests.integration.conftest import (
    ADMIN,
    COUNTY,
    TOWNSHIP,
    VILLAGE,
    bill,
    fresh_national_id,
    register,
    row_counts,
)

pytestmark = pytest.mark.integration

WORKED_ITEMS = (("A", 1_400_000), ("B", 400_000), ("C", 200_000))


async def settle(client, body, headers=COUNTY, status=201):
    response = await client.post("/v1/settlements", json=body, headers=headers)
    payload = await response.json()
    assert response.status == status, payload
    return payload


async def test_worked_example_minimum_allowance(client):
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    result = await settle(client, bill(person, *WORKED_ITEMS))
    # docs/worked-examples.md, example 1:
    # total 20,000.00; eligible 17,600.00; insurance 12,750.00; aid 3,395.00; out of pocket 3,855.00
    assert (result["total"], result["eligible"]) == (2_000_000, 1_760_000)
    assert (result["insurance"], result["veteran_subsidy"], result["hardship_aid"]) == (1_275_000, 0, 339_500)
    assert result["out_of_pocket"] == 385_500
    assert result["policy_version"] == "default-2026"
    assert result["person"].startswith(person[:3]) and person not in str(result)
    assert sum(line["out_of_pocket"] for line in result["lines"]) == 385_500


async def test_worked_example_with_priority_care(client):
    person = await register(
        client,
        ("insurance", "resident"),
        ("hardship_aid", "minimum_allowance"),
        ("veteran_subsidy", "priority_care"),
    )
    result = await settle(client, bill(person, *WORKED_ITEMS))
    # docs/worked-examples.md, example 2:
    # subsidy 4,850 × 0.60 = 2,910.00; aid 1,940 × 0.70 = 1,358.00; out of pocket 2,982.00
    assert (result["insurance"], result["veteran_subsidy"], result["hardship_aid"]) == (1_275_000, 291_000, 135_800)
    assert result["out_of_pocket"] == 298_200
    traces = {trace["payer"]: trace for trace in result["traces"]}
    assert traces["veteran_subsidy"]["bands"][0]["rate"] == "0.60"
    assert traces["insurance"]["deductible_consumed"] == 60_000
    assert any("2982.00" in line for line in result["explanation"])


async def test_get_returns_the_stored_settlement(client):
    person = await register(client, ("insurance", "resident"))
    created = await settle(client, bill(person, ("A", 50_000), clinic_id="V001", visit_type="outpatient"), VILLAGE)
    response = await client.get(f"/v1/settlements/{created['settlement_id']}", headers=VILLAGE)
    fetched = await response.json()
    assert response.status == 200
    assert fetched["settlement_id"] == created["settlement_id"]
    assert fetched["out_of_pocket"] == created["out_of_pocket"]
    assert fetched["reversed"] is False
    assert fetched["person"] == created["person"] and fetched["person"].count("*") == 13
    # MessagePack reads work too.
    response = await client.get(
        f"/v1/settlements/{created['settlement_id']}", headers={**VILLAGE, "Accept": "application/msgpack"}
    )
    assert response.status == 200
    assert msgspec.msgpack.decode(await response.read())["settlement_id"] == created["settlement_id"]
    # Another clinic's terminal learns nothing: not found, not forbidden.
    response = await client.get(f"/v1/settlements/{created['settlement_id']}", headers=COUNTY)
    assert response.status == 404
    assert (await response.json())["code"] == "settlement_not_found"


async def test_quote_writes_nothing(client, pool):
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "destitute"))
    before = await row_counts(pool)
    response = await client.post("/v1/quotes", json=bill(person, *WORKED_ITEMS), headers=COUNTY)
    quote = await response.json()
    assert response.status == 200, quote
    assert quote["quote"] is True
    assert quote["insurance"] == 1_275_000 and quote["hardship_aid"] == 485_000
    assert await row_counts(pool) == before
    # The quote matches what settling then pays.
    settled = await settle(client, bill(person, *WORKED_ITEMS))
    assert settled["out_of_pocket"] == quote["out_of_pocket"]


async def eligibility(client, person, day="2026-06-01"):
    response = await client.post("/v1/eligibility", json={"person_id": person, "service_date": day}, headers=COUNTY)
    assert response.status == 200
    return await response.json()


async def test_reversal_restores_accumulators_and_twice_is_refused(client, pool):
    person = await register(
        client, ("insurance", "resident"), ("veteran_subsidy", "priority_care"), ("hardship_aid", "marginal")
    )
    first = await settle(client, bill(person, ("A", 100_000), clinic_id="T001", visit_type="outpatient"), TOWNSHIP)
    after_first = await eligibility(client, person)
    second = await settle(client, bill(person, *WORKED_ITEMS, clinic_id="T001"), TOWNSHIP)
    assert second["insurance"] > 0

    first_reversal = f"rev-{uuid.uuid4().hex}"
    response = await client.post(
        f"/v1/settlements/{second['settlement_id']}/reversal", json={"request_id": first_reversal}, headers=TOWNSHIP
    )
    reversal = await response.json()
    assert response.status == 201, reversal
    assert reversal["hardship_aid"] == second["hardship_aid"]
    assert await eligibility(client, person) == after_first

    again = await client.post(
        f"/v1/settlements/{second['settlement_id']}/reversal",
        json={"request_id": f"rev-{uuid.uuid4().hex}"},
        headers=TOWNSHIP,
    )
    assert again.status == 409
    assert (await again.json())["code"] == "already_reversed"
    # Retrying the first reversal request replays it rather than refusing.
    replay = await client.post(
        f"/v1/settlements/{second['settlement_id']}/reversal", json={"request_id": first_reversal}, headers=TOWNSHIP
    )
    assert replay.status == 200 and (await replay.json())["replayed"] is True
    fetched = await (await client.get(f"/v1/settlements/{second['settlement_id']}", headers=TOWNSHIP)).json()
    assert fetched["reversed"] is True and fetched["reversal_id"] == reversal["reversal_id"]
    assert first["settlement_id"] != second["settlement_id"]


async def test_reversal_of_another_clinics_settlement_is_not_found(client):
    person = await register(client, ("insurance", "resident"))
    created = await settle(client, bill(person, ("A", 10_000), visit_type="outpatient"))
    response = await client.post(
        f"/v1/settlements/{created['settlement_id']}/reversal",
        json={"request_id": f"rev-{uuid.uuid4().hex}"},
        headers=VILLAGE,
    )
    assert response.status == 404


async def test_msgpack_round_trip(client):
    person = await register(client, ("insurance", "resident"), ("hardship_aid", "minimum_allowance"))
    body = bill(person, *WORKED_ITEMS)
    response = await client.post(
        "/v1/settlements",
        data=msgspec.msgpack.encode(body),
        headers={**COUNTY, "Content-Type": "application/msgpack", "Accept": "application/msgpack"},
    )
    assert response.status == 201
    assert response.content_type == "application/msgpack"
    result = msgspec.msgpack.decode(await response.read())
    assert result["hardship_aid"] == 339_500 and result["out_of_pocket"] == 385_500
    # The same request as JSON is the same request: replayed, not settled again.
    replay = await client.post("/v1/settlements", json=body, headers=COUNTY)
    replayed = await replay.json()
    assert replay.status == 200 and replayed["replayed"] is True
    assert replayed["settlement_id"] == result["settlement_id"]


async def test_domain_refusals_have_their_own_codes(client, pool):
    person = await register(client, ("insurance", "resident"))
    before = await row_counts(pool)
    cases = [
        (bill(person, ("A", 100), clinic_id="V001"), VILLAGE, 422, "inpatient_not_offered"),
        (bill(person, ("A", 100), service_date="2019-06-01"), COUNTY, 422, "no_policy_in_force"),
        (bill("11010519491231002X", ("A", 100)), COUNTY, 422, "unknown_person"),
        (bill("110105194912310021", ("A", 100)), COUNTY, 422, "invalid_national_id"),
        (bill(person, ("A", 100), clinic_id="C002"), COUNTY, 403, "terminal_not_for_clinic"),
        (bill(person, ("A", 100), clinic_id="NOPE"), {"X-Terminal-Id": "nobody"}, 401, "unknown_key"),
        (
            bill(person, ("A", 100), service_date=(dt.date.today() + dt.timedelta(days=30)).isoformat()),
            COUNTY,
            422,
            "service_date_in_future",
        ),
    ]
    for body, headers, status, code in cases:
        response = await client.post("/v1/settlements", json=body, headers=headers)
        problem = await response.json()
        assert (response.status, problem["code"]) == (status, code), problem
        assert response.content_type == "application/problem+json"
        assert problem["request_id"]
        assert body["person_id"] not in str(problem)
    assert await row_counts(pool) == before


async def test_struck_off_programme_pays_nothing_and_warns(client):
    person = await register(
        client,
        ("insurance", "resident"),
        ("hardship_aid", "destitute"),
        struck_off_on=dt.date(2026, 3, 1),
    )
    before = await settle(client, bill(person, ("A", 100_000), visit_type="outpatient", service_date="2026-02-28"))
    assert before["hardship_aid"] > 0 and before["warnings"] == []
    after = await settle(client, bill(person, ("A", 100_000), visit_type="outpatient", service_date="2026-03-01"))
    assert after["hardship_aid"] == 0
    assert after["warnings"][0]["code"] == "struck_off"
    assert "2026-03-01" in after["warnings"][0]["message"]


async def test_eligibility_shows_programmes_and_remaining_caps(client):
    person = await register(client, ("insurance", "resident"), ("veteran_subsidy", "disabled_veteran"))
    await settle(client, bill(person, ("A", 30_000), clinic_id="T001", visit_type="outpatient"), TOWNSHIP)
    result = await eligibility(client, person)
    # 300.00 outpatient: the 200.00 deductible is consumed, 100.00 × 0.45 = 45.00 insurance, subsidy pays the rest.
    assert result["outpatient_deductible_remaining"] == 0
    assert result["insurance_outpatient_cap_remaining"] == 300_000 - 4_500
    veteran = next(p for p in result["programmes"] if p["programme"] == "veteran_subsidy")
    assert veteran["used"] == 30_000 - 4_500 and veteran["remaining"] == 10_000_000 - 25_500
    # Who the ID belongs to, for the clerk at the counter: registered without a name here.
    assert result["name"] == ""
    assert result["sex"] == identity.sex(person) and result["age"] == identity.age_on(person, dt.date(2026, 6, 1))


async def test_eligibility_names_the_person_for_the_clerk_to_check(client):
    national_id = identity.make_id("410103", dt.date(1960, 7, 15), 123)  # 17th character 3: a man
    response = await client.post(
        "/v1/people",
        json={
            "person_id": national_id,
            "name": "王秀英",
            "memberships": [{"programme": "insurance", "code": "resident", "effective_from": "2026-01-01"}],
        },
        headers=ADMIN,
    )
    assert response.status == 201, await response.text()
    result = await eligibility(client, national_id)
    assert (result["name"], result["sex"], result["age"]) == ("王秀英", "male", 65)


async def test_clinics_filter_by_level(client):
    response = await client.get("/v1/clinics?level=township", headers=COUNTY)
    clinics = (await response.json())["clinics"]
    assert len(clinics) == 13 and {clinic["level"] for clinic in clinics} == {"township"}
    response = await client.get("/v1/clinics", headers=COUNTY)
    assert len((await response.json())["clinics"]) == 116
    response = await client.get("/v1/clinics?level=hospital", headers=COUNTY)
    assert response.status == 422


async def test_people_requires_admin_and_valid_memberships(client):
    response = await client.post("/v1/people", json={"person_id": "11010519491231002X"}, headers=COUNTY)
    assert response.status == 403
    response = await client.post(
        "/v1/people",
        json={
            "person_id": "11010519491231002X",
            "memberships": [{"programme": "hardship_aid", "code": "rich", "effective_from": "2026-01-01"}],
        },
        headers=ADMIN,
    )
    problem = await response.json()
    assert response.status == 422 and problem["field"] == "memberships[0].code"


async def test_health_routes_answer_head_as_load_balancers_probe_them(client):
    for path in ("/healthz", "/readyz"):
        response = await client.request("HEAD", path)
        assert response.status == 200, path
        assert await response.read() == b""


async def test_operator_endpoints(client):
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    unsigned = await client.client.get("/openapi.json")  # no signature: integrators' tools load it as it is
    assert unsigned.status == 200
    document = await unsigned.json()
    assert "/v1/settlements" in document["paths"] and "SettleRequest" in document["components"]["schemas"]
    metrics = await (await client.get("/metrics")).text()
    for name in (
        "medsettle_http_request_duration_seconds_bucket",
        "medsettle_settlements_total",
        "medsettle_paid_fen_total",
        "medsettle_idempotent_replays_total",
        "medsettle_db_pool_in_use",
        "medsettle_db_pool_max",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ):
        assert name in metrics


async def test_docs_page_shows_every_operation_of_the_served_document(client):
    """/docs is what a person at a browser reads: the served document's every operation, unsigned, as HTML."""
    document = await (await client.client.get("/openapi.json")).json()
    response = await client.client.get("/docs")  # no signature, like /openapi.json
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    operation_ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(operation_ids) > 20
    missing = [name for name in operation_ids if f"<code>{name}</code>" not in page]
    assert not missing, f"operations missing from /docs: {missing}"
    assert 'href="/openapi.json"' in page and "X-Signature" in page
    assert "&quot;request_id&quot;: &quot;demo-0001&quot;" in page  # the worked example, pretty and escaped
    assert "<script" not in page


async def test_metrics_answer_the_alert_rules_without_traffic(client):
    """The background loops set what deploy/alerts/medsettle.rules.yml reads: whether the database answers
    (checked every 5 s) and when the audit sealer (every 2 s) last caught up."""
    deadline = time.monotonic() + 15
    up = sealed = None
    while (up != 1 or not sealed) and time.monotonic() < deadline:
        metrics = await (await client.get("/metrics")).text()
        up = _sample(metrics, "medsettle_database_up")
        sealed = _sample(metrics, "medsettle_audit_sealed_timestamp_seconds")
        await asyncio.sleep(0.1)
    assert up == 1
    assert sealed is not None and abs(time.time() - sealed) < 60, "no sealing round finished within 15 s"


def _sample(metrics: str, name: str) -> float | None:
    found = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
    return float(found[1]) if found else None


async def test_person_without_memberships_is_registered_and_names_refuse_control_characters(client, pool):
    person = fresh_national_id()
    response = await client.post("/v1/people", json={"person_id": person, "name": "Wu Gang"}, headers=ADMIN)
    created = await response.json()
    assert response.status == 201 and created["created"] is True and created["memberships"] == []
    response = await client.post("/v1/eligibility", json={"person_id": person}, headers=COUNTY)
    eligibility = await response.json()
    assert response.status == 200 and eligibility["insured"] is False and eligibility["programmes"] == []
    before = await row_counts(pool)
    response = await client.post("/v1/people", json={"person_id": person, "name": "Wu\u0000Gang"}, headers=ADMIN)
    assert response.status == 422 and (await response.json())["field"] == "name"
    assert await row_counts(pool) == before


async def test_reversal_reason_with_nul_is_refused(client, pool):
    person = await register(client, ("insurance", "resident"))
    created = await settle(client, bill(person, ("A", 10_000), visit_type="outpatient"))
    before = await row_counts(pool)
    response = await client.post(
        f"/v1/settlements/{created['settlement_id']}/reversal",
        json={"request_id": f"rev-{uuid.uuid4().hex}", "reason": "x\u0000y"},
        headers=COUNTY,
    )
    assert response.status == 422 and (await response.json())["field"] == "reason"
    assert await row_counts(pool) == before


async def test_metrics_count_what_reversals_give_back_so_amounts_can_be_shown_net(client):
    def given_back(text: str) -> float:
        found = re.search(r'^medsettle_reversed_fen_total\{payer="insurance"\} (\S+)$', text, re.MULTILINE)
        return float(found[1]) if found else 0.0

    before = given_back(await (await client.get("/metrics")).text())
    person = await register(client, ("insurance", "resident"))
    settled = await settle(client, bill(person, ("A", 200_000), clinic_id="T001"), TOWNSHIP)
    assert settled["insurance"] > 0
    response = await client.post(
        f"/v1/settlements/{settled['settlement_id']}/reversal",
        json={"request_id": f"rev-{uuid.uuid4().hex}"},
        headers=TOWNSHIP,
    )
    assert response.status == 201
    assert given_back(await (await client.get("/metrics")).text()) == before + settled["insurance"]
