"""The report routes' answers are described in /openapi.json by the Structs the reports return.

Each report route's JSON and MessagePack answer names a component schema generated
from ``adapters.report_models`` (not a free-form object), and a report as the gateway
encodes it fits that schema, field names and all. ``tests/integration/test_schemathesis.py``
checks live answers against the same document.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import jsonschema
import msgspec
import pytest

from adapters import report_models as r
from adapters.finance import FUNDS
from gateway.http.openapi import openapi_document
from gateway.http.routes import ROUTES

REPORT_ROUTES = {
    ("/v1/finance/daily", "get"): "DailyStatement",
    ("/v1/finance/reconciliation", "post"): "Reconciliation",
    ("/v1/finance/stats", "get"): "FinanceStatsReport",
    ("/v1/registry/stats", "get"): "RegistryStats",
}
DOCUMENT = openapi_document(ROUTES)


def fits(value: Any, component: str) -> None:
    """Raise unless the JSON of ``value`` fits the document's component schema."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": DOCUMENT["components"]}
    jsonschema.Draft202012Validator(schema).validate(msgspec.json.decode(msgspec.json.encode(value)))


@pytest.mark.parametrize(("route", "component"), sorted(REPORT_ROUTES.items()), ids=str)
def test_report_answers_name_their_schema(route: tuple[str, str], component: str) -> None:
    path, method = route
    content = DOCUMENT["paths"][path][method]["responses"]["200"]["content"]
    for media in ("application/json", "application/msgpack"):
        assert content[media]["schema"] == {"$ref": f"#/components/schemas/{component}"}, (path, media)
    assert component in DOCUMENT["components"]["schemas"]


def _funds(fen: int) -> r.StatementFunds:
    counts = r.FundCounts(settlements_count=1, settlements_fen=fen, reversals_count=0, reversals_fen=0, net_fen=fen)
    return r.StatementFunds(**dict.fromkeys(FUNDS, counts))


BLOCK = {"settlements": 1, "reversals": 0, "billed_fen": 500, "reversed_fen": 0, "net_fen": 500, "funds": _funds(500)}
PERIOD = r.Period(from_=dt.date(2026, 1, 1), to=dt.date(2026, 1, 31))
FIGURES = {
    "settlements": 3,
    "people_served": 2,
    "total_fen": 900,
    "insurance_fen": 400,
    "veteran_subsidy_fen": 100,
    "hardship_aid_fen": 100,
    "out_of_pocket_fen": 300,
    "median_out_of_pocket_share": "0.3333",
    "out_of_pocket_share_distribution": [0, 0, 0, 3, 0, 0, 0, 0, 0, 0],
    "insurance_cap_reached": 1,
    "veteran_subsidy_cap_reached": 0,
    "hardship_aid_cap_reached": 0,
}


def test_a_daily_statement_fits_its_schema() -> None:
    statement = r.DailyStatement(
        date=dt.date(2026, 2, 4),
        closed=True,
        basis="ledger_entries booked on this China date",
        funds=list(FUNDS),
        by_clinic=[r.ClinicStatement(clinic_id="V001", name="V1", level="village", region="Nanhe", **BLOCK)],
        by_level=[r.LevelStatement(level="village", **BLOCK)],
        by_region=[r.RegionStatement(region="Nanhe", **BLOCK)],
        total=r.StatementTotal(**BLOCK),
        reversals=[
            r.StatementReversal(
                reversal_id=uuid.uuid4(),
                settlement_id=uuid.uuid4(),
                clinic_id="V001",
                visit_type="outpatient",
                service_date=dt.date(2026, 2, 1),
                settled_on=None,
                total_fen=500,
                insurance_fen=200,
                veteran_subsidy_fen=0,
                hardship_aid_fen=0,
                out_of_pocket_fen=300,
                terminal_id="term-V001",
                reason="",
                reversed_at="2026-02-04T07:00:00+00:00",
            )
        ],
    )
    fits(statement, "DailyStatement")
    encoded = msgspec.json.decode(msgspec.json.encode(statement))
    assert list(encoded["by_clinic"][0])[:5] == ["clinic_id", "name", "level", "region", "settlements"]
    assert list(encoded["total"]["funds"]) == list(FUNDS)


def test_a_reconciliation_with_every_kind_of_discrepancy_fits_its_schema() -> None:
    sums = r.PayerSums(total=1, insurance=0, veteran_subsidy=0, hardship_aid=0, out_of_pocket=1)
    found: list[r.Discrepancy] = [
        r.AmountDiffers(settlement_id=uuid.uuid4(), field="total", gateway=1, submitted=2),
        r.ReversedAtGatewayOnly(settlement_id=uuid.uuid4()),
        r.ReversedAtClinicOnly(settlement_id=uuid.uuid4()),
        r.MissingAtGateway(settlement_id=uuid.uuid4(), submitted_total=5),
        r.MissingAtClinic(settlement_id=uuid.uuid4(), gateway_total=6),
    ]
    result = r.Reconciliation(
        date=dt.date(2026, 2, 2),
        clinic_id="V052",
        fund=None,
        clean=False,
        confirmed=False,
        submitted_count=4,
        gateway_count=4,
        matched_count=0,
        matched_sums_fen=sums,
        submitted_sums_fen=sums,
        gateway_sums_fen=sums,
        discrepancy_counts={r.discrepancy_kind(item): 1 for item in found},
        discrepancies=found,
    )
    fits(result, "Reconciliation")
    encoded = msgspec.json.decode(msgspec.json.encode(result))
    assert [item["kind"] for item in encoded["discrepancies"]] == list(encoded["discrepancy_counts"])
    assert list(encoded["discrepancies"][0]) == ["kind", "settlement_id", "field", "gateway", "submitted"]


@pytest.mark.parametrize("by", sorted(r.FINANCE_STATS))
def test_finance_statistics_by_each_dimension_fit_their_schema(by: r.Dimension) -> None:
    report, group = r.FINANCE_STATS[by]
    stats = report(period=PERIOD, groups=[group(**{by: "x"}, **FIGURES)])  # type: ignore[arg-type]
    assert stats.by == by
    fits(stats, "FinanceStatsReport")
    encoded = msgspec.json.decode(msgspec.json.encode(stats))
    assert list(encoded) == ["by", "period", "groups"] and encoded["by"] == by
    assert list(encoded["groups"][0]) == [by, *FIGURES], "the dimension's own key comes first"
    assert encoded["period"] == {"from": "2026-01-01", "to": "2026-01-31"}


def test_a_group_under_another_dimension_does_not_fit() -> None:
    """The schema has teeth: a level report whose group is keyed by region is refused."""
    stats = r.FinanceStatsByLevel(period=PERIOD, groups=[r.RegionGroup(region="Nanhe", **FIGURES)])  # type: ignore[list-item]
    with pytest.raises(jsonschema.ValidationError):
        fits(stats, "FinanceStatsReport")


COUNTS = {"in_force": 2, "added": 1, "struck_off": 0}


def test_registry_statistics_fit_their_schema() -> None:
    stats = r.RegistryStats(
        on=dt.date(2026, 6, 1),
        period=PERIOD,
        by_region=[r.RegionCount(programme="hardship_aid", code="low_income", region="410102", **COUNTS)],
        by_programme=[r.ProgrammeCount(programme="hardship_aid", code="low_income", **COUNTS)],
        served_by_clinic_level=[r.ServedByLevel(clinic_level="county", people_served=1, settlements=1)],
    )
    fits(stats, "RegistryStats")
