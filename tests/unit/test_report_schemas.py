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
from adapters.fund_names import code_of
from gateway.http.openapi import openapi_document
from gateway.http.routes import ROUTES

REPORT_ROUTES = {
    ("/v1/finance/daily", "get"): "DailyStatement",
    ("/v1/finance/monthly", "get"): "MonthlyStatement",
    ("/v1/people/statement", "post"): "PersonYearStatement",
    ("/v1/settlements", "get"): "SettlementPage",
    ("/v1/finance/reconciliation", "post"): "Reconciliation",
    ("/v1/finance/reconciliation/totals", "post"): "TotalsReconciliation",
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


# A three-tier day: the three named funds, two more funds of the chain, and the patient.
ACCOUNTS = ["insurance_fund", "critical_illness_fund", "aid_fund", "priority_care_fund", "charity_fund", "patient"]


def _funds(fen: int) -> r.StatementFunds:
    counts = r.FundCounts(settlements_count=1, settlements_fen=fen, reversals_count=0, reversals_fen=0, net_fen=fen)
    return dict.fromkeys(ACCOUNTS, counts)


def _buckets(**fen: int) -> r.StatementBuckets:
    """Each bucket's counts: the fen given, settled on the day and not reversed."""
    return r.StatementBuckets(
        **{
            bucket: r.BucketCounts(
                settlements_count=int(amount > 0),
                settlements_fen=amount,
                reversals_count=0,
                reversals_fen=0,
                net_fen=amount,
            )
            for bucket, amount in fen.items()
        }
    )


BLOCK = {
    "settlements": 1,
    "reversals": 0,
    "billed_fen": 500,
    "reversed_fen": 0,
    "net_fen": 500,
    "funds": _funds(500),
    "buckets": _buckets(not_covered=100, over_limit=30, self_pay_first=20, eligible=350, unsplit=0),
}
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
# The group's four buckets and the part not split: they add up to total_fen.
BUCKET_FIGURES = {
    "not_covered_fen": 200,
    "over_limit_fen": 50,
    "self_pay_first_fen": 40,
    "eligible_fen": 600,
    "unsplit_fen": 10,
}
# One adjustment booked in the period moved 50.00 of aid to the patient.
ADJUSTMENT_FIGURES = {
    "adjustments_count": 1,
    "adjustments_fen": {"insurance": 0, "veteran_subsidy": 0, "hardship_aid": 5000, "critical_illness": 0,
                        "out_of_pocket": -5000},
    "net_fen": {"insurance": 400, "veteran_subsidy": 100, "hardship_aid": 5100, "critical_illness": 5,
                "out_of_pocket": -4700},
}  # fmt: skip


def test_a_daily_statement_fits_its_schema() -> None:
    statement = r.DailyStatement(
        date=dt.date(2026, 2, 4),
        closed=True,
        basis="ledger_entries booked on this China date",
        funds=ACCOUNTS,
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
                other_funds_fen={"critical_illness": 100, "charity": 0},
                not_covered_fen=100,
                over_limit_fen=0,
                self_pay_first_fen=0,
                eligible_fen=400,
                unsplit_fen=0,
            )
        ],
        accounts=[
            r.FundEntry(code=code_of(account), account=account, name=account, name_en=account) for account in ACCOUNTS
        ],
    )
    fits(statement, "DailyStatement")
    encoded = msgspec.json.decode(msgspec.json.encode(statement))
    assert list(encoded["by_clinic"][0])[:5] == ["clinic_id", "name", "level", "region", "settlements"]
    # Every fund of the day by its account, in the statement's order; today's three keys among them.
    assert list(encoded["total"]["funds"]) == encoded["funds"] == ACCOUNTS
    assert set(FUNDS) <= set(encoded["total"]["funds"])
    assert [entry["code"] for entry in encoded["accounts"]] == [
        "insurance",
        "critical_illness",
        "hardship_aid",
        "veteran_subsidy",
        "charity",
        "out_of_pocket",
    ]
    assert encoded["reversals"][0]["other_funds_fen"] == {"critical_illness": 100, "charity": 0}
    # The four buckets and the part not split, each with its counts, in the national answer's order.
    assert list(encoded["total"]["buckets"]) == ["not_covered", "over_limit", "self_pay_first", "eligible", "unsplit"]
    assert sum(part["net_fen"] for part in encoded["total"]["buckets"].values()) == encoded["total"]["net_fen"]


def test_a_statement_block_without_a_bucket_does_not_fit() -> None:
    """The schema has teeth: every bucket is there, in whole fen."""
    buckets = msgspec.to_builtins(BLOCK["buckets"])
    del buckets["over_limit"]
    with pytest.raises(jsonschema.ValidationError):
        fits(BLOCK | {"buckets": buckets}, "StatementTotal")
    buckets = msgspec.to_builtins(BLOCK["buckets"])
    buckets["eligible"]["net_fen"] = 1.5
    with pytest.raises(jsonschema.ValidationError):
        fits(BLOCK | {"buckets": buckets}, "StatementTotal")


def test_a_statement_block_without_a_fund_count_does_not_fit() -> None:
    """The schema has teeth: a fund's counts must be whole counts and fen."""
    block = BLOCK | {"funds": {"critical_illness_fund": {"settlements_count": "one"}}}
    with pytest.raises(jsonschema.ValidationError):
        fits(block | {"clinic_id": "V001", "name": "V1", "level": "village", "region": "Nanhe"}, "ClinicStatement")


def test_a_reconciliation_with_every_kind_of_discrepancy_fits_its_schema() -> None:
    sums = r.PayerSums(
        total=2, insurance=0, veteran_subsidy=0, hardship_aid=0, out_of_pocket=1, other_funds={"critical_illness": 1}
    )
    found: list[r.Discrepancy] = [
        r.AmountDiffers(settlement_id=uuid.uuid4(), field="total", gateway=1, submitted=2),
        r.AmountDiffers(settlement_id=uuid.uuid4(), field="critical_illness", gateway=1, submitted=0),
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
        discrepancy_counts={"amount_differs": 2} | {r.discrepancy_kind(item): 1 for item in found[2:]},
        discrepancies=found,
        fund_code="critical_illness",
        fund_name="城乡居民大病保险",
    )
    fits(result, "Reconciliation")
    encoded = msgspec.json.decode(msgspec.json.encode(result))
    assert list(dict.fromkeys(item["kind"] for item in encoded["discrepancies"])) == list(encoded["discrepancy_counts"])
    assert encoded["gateway_sums_fen"]["other_funds"] == {"critical_illness": 1}
    assert list(encoded["discrepancies"][0]) == ["kind", "settlement_id", "field", "gateway", "submitted", "request_id"]


@pytest.mark.parametrize("by", sorted(r.FINANCE_STATS))
def test_finance_statistics_by_each_dimension_fit_their_schema(by: r.Dimension) -> None:
    report, group = r.FINANCE_STATS[by]
    funds = [r.FundEntry(code="critical_illness", account="critical_illness_fund", name="大病", name_en="CI")]
    stats = report(  # type: ignore[arg-type]
        period=PERIOD,
        funds=funds,
        groups=[
            group(
                **{by: "x"}, **FIGURES, other_funds_fen={"critical_illness": 5}, **BUCKET_FIGURES, **ADJUSTMENT_FIGURES
            )
        ],
    )
    assert stats.by == by
    fits(stats, "FinanceStatsReport")
    encoded = msgspec.json.decode(msgspec.json.encode(stats))
    assert list(encoded) == ["by", "period", "funds", "groups"] and encoded["by"] == by
    assert list(encoded["groups"][0]) == [by, *FIGURES, "other_funds_fen", *BUCKET_FIGURES, *ADJUSTMENT_FIGURES], (
        "the dimension's own key comes first"
    )
    assert encoded["period"] == {"from": "2026-01-01", "to": "2026-01-31"}


def test_a_group_under_another_dimension_does_not_fit() -> None:
    """The schema has teeth: a level report whose group is keyed by region is refused."""
    stats = r.FinanceStatsByLevel(
        period=PERIOD,
        groups=[r.RegionGroup(region="Nanhe", **FIGURES, **BUCKET_FIGURES, **ADJUSTMENT_FIGURES)],  # type: ignore[list-item]
    )
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
