"""Reports and receipts name every fund of any chain: names from the policy book, in its order.

``adapters.fund_names.FundDirectory`` reads every policy version: the latest version that
declares a fund names it, funds come in the latest chain's order, then the funds only older
versions declare, then any other fund by code. The CSV writers, the dashboard page and the
receipt explanation are pure, so they are checked here on hand-made reports; the same over
HTTP on a three-tier gateway is tests/integration/test_three_tier_reports.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import msgspec

from adapters.finance import statement_accounts, statement_csv
from adapters.finance_stats import stats_csv
from adapters.fund_names import PATIENT, FundDirectory, code_of
from adapters.report_models import (
    Amounts,
    BucketCounts,
    ClinicStatement,
    DailyStatement,
    DashboardFigures,
    FinanceStatsByLevel,
    FundCounts,
    LevelGroup,
    Period,
    StatementBuckets,
    StatementTotal,
)
from gateway.dashboard.pages import render
from settlement.chain import settle
from settlement.chain_policy import parse_chain
from settlement.explain import explain, fund_label
from settlement.models import Bill, LineItem, PersonStatus

REPO = Path(__file__).resolve().parents[2]
THREE_TIER = parse_chain(
    (REPO / "policies/examples/three-tier/three-tier-2026.toml").read_text(encoding="utf-8"), "three-tier"
)
# A later version that goes back to the default's three funds, under the default's names.
DEFAULT_2027 = parse_chain(
    (REPO / "policies/default.toml")
    .read_text(encoding="utf-8")
    .replace('id = "default-2026"', 'id = "default-2027"')
    .replace("effective_from = 2026-01-01", "effective_from = 2027-01-01"),
    "default-2027",
)


def test_the_latest_version_names_a_fund_and_orders_the_funds() -> None:
    funds = FundDirectory([DEFAULT_2027, THREE_TIER])  # in any order: versions are sorted by effective date
    codes = ["lottery", "charity", "hardship_aid", "critical_illness", "insurance", "tilted_aid", "veteran_subsidy"]
    # The latest chain (insurance, veteran_subsidy, hardship_aid), the older version's other funds in its
    # chain order, then a fund no version declares.
    assert funds.ordered(codes) == [
        "insurance",
        "veteran_subsidy",
        "hardship_aid",
        "critical_illness",
        "tilted_aid",
        "charity",
        "lottery",
    ]
    assert funds.entry("hardship_aid").name == "城乡困难人员医疗救助"  # 2027's name, not three-tier's 城乡医疗救助
    assert funds.entry("hardship_aid").account == "aid_fund"
    charity = funds.entry("charity")
    assert (charity.account, charity.name, charity.name_en) == ("charity_fund", "慈善医疗救助", "charity medical aid")
    lottery = funds.entry("lottery")
    assert (lottery.account, lottery.name, lottery.name_en) == ("lottery_fund", "lottery", "lottery")
    assert funds.knows("tilted_aid") and not funds.knows("lottery")
    assert FundDirectory([THREE_TIER]).entry("hardship_aid").name == "城乡医疗救助"


def test_accounts_and_codes() -> None:
    assert [code_of(account) for account in ("insurance_fund", "priority_care_fund", "aid_fund")] == [
        "insurance",
        "veteran_subsidy",
        "hardship_aid",
    ]
    assert code_of("critical_illness_fund") == "critical_illness" and code_of("patient") == "out_of_pocket"


def test_a_statement_lists_the_three_funds_always_and_every_fund_booked() -> None:
    funds = FundDirectory([THREE_TIER])
    # A day on which nothing was booked still lists today's four accounts.
    assert [entry.account for entry in statement_accounts(funds, [])] == [
        "insurance_fund",
        "aid_fund",
        "priority_care_fund",
        "patient",
    ]
    booked = ["clinic", "patient", "charity_fund", "insurance_fund", "aid_fund", "priority_care_fund", "lottery_fund"]
    entries = statement_accounts(funds, booked)
    assert [entry.account for entry in entries] == [
        "insurance_fund",
        "aid_fund",
        "priority_care_fund",
        "charity_fund",
        "lottery_fund",
        "patient",
    ]
    assert entries[-1] == PATIENT and entries[3].name == "慈善医疗救助" and entries[4].name == "lottery"


def _bucket(fen: int) -> BucketCounts:
    """A bucket's counts: a fund's without the adjustments, which buckets do not have."""
    counts = msgspec.structs.asdict(_counts(fen))
    return BucketCounts(**{name: value for name, value in counts.items() if not name.startswith("adjustments")})


def _counts(fen: int) -> FundCounts:
    return FundCounts(settlements_count=1, settlements_fen=fen, reversals_count=0, reversals_fen=0, net_fen=fen)


def test_the_statement_csv_has_a_row_per_fund_with_its_code_and_name() -> None:
    entries = statement_accounts(FundDirectory([THREE_TIER]), ["critical_illness_fund", "insurance_fund", "patient"])
    block = {
        "settlements": 1,
        "reversals": 0,
        "billed_fen": 900,
        "reversed_fen": 0,
        "net_fen": 900,
        "funds": {entry.account: _counts(100 * (index + 1)) for index, entry in enumerate(entries)},
        "buckets": StatementBuckets(
            not_covered=_bucket(100),
            over_limit=_bucket(0),
            self_pay_first=_bucket(50),
            eligible=_bucket(750),
            unsplit=_bucket(0),
        ),
    }
    statement = DailyStatement(
        date=dt.date(2026, 5, 3),
        closed=True,
        basis="test",
        funds=[entry.account for entry in entries],
        by_clinic=[ClinicStatement(clinic_id="C001", name="County", level="county", region="Nanhe", **block)],
        by_level=[],
        by_region=[],
        total=StatementTotal(**block),
        reversals=[],
        accounts=entries,
    )
    rows = list(csv.DictReader(io.StringIO(statement_csv(statement).lstrip("\ufeff"))))
    assert [(row["scope"], row["fund"], row["fund_code"], row["fund_name"], row["net_fen"]) for row in rows[:5]] == [
        ("clinic", "insurance_fund", "insurance", "城乡居民基本医疗保险", "100"),
        ("clinic", "critical_illness_fund", "critical_illness", "城乡居民大病保险", "200"),
        ("clinic", "aid_fund", "hardship_aid", "城乡医疗救助", "300"),
        ("clinic", "priority_care_fund", "veteran_subsidy", "重点优抚对象医疗补助", "400"),
        ("clinic", "patient", "out_of_pocket", "个人自付", "500"),
    ]
    assert len([row for row in rows if row["fund"]]) == 10  # the clinic and the total, five funds each
    assert [(row["scope"], row["bucket"], row["net_fen"]) for row in rows if row["bucket"]][:5] == [
        ("clinic", "not_covered", "100"),
        ("clinic", "over_limit", "0"),
        ("clinic", "self_pay_first", "50"),
        ("clinic", "eligible", "750"),
        ("clinic", "unsplit", "0"),
    ]


def test_the_statistics_csv_has_a_column_per_other_fund() -> None:
    funds = FundDirectory([THREE_TIER])
    figures = {
        "settlements": 1,
        "people_served": 1,
        "total_fen": 1000,
        "insurance_fen": 500,
        "veteran_subsidy_fen": 0,
        "hardship_aid_fen": 100,
        "out_of_pocket_fen": 100,
        "median_out_of_pocket_share": "0.1000",
        "out_of_pocket_share_distribution": [0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        "insurance_cap_reached": 0,
        "veteran_subsidy_cap_reached": 0,
        "hardship_aid_cap_reached": 0,
        "not_covered_fen": 100,
        "over_limit_fen": 0,
        "self_pay_first_fen": 0,
        "eligible_fen": 900,
        "unsplit_fen": 0,
        "adjustments_count": 1,
        "adjustments_fen": {"hardship_aid": 30, "critical_illness": -10, "out_of_pocket": -20},
        "net_fen": {"hardship_aid": 130, "critical_illness": 240, "out_of_pocket": 80},
    }
    stats = FinanceStatsByLevel(
        period=Period(from_=dt.date(2026, 5, 1), to=dt.date(2026, 5, 31)),
        funds=funds.entries(["insurance", "veteran_subsidy", "hardship_aid", "critical_illness", "charity"]),
        groups=[LevelGroup(level="county", **figures, other_funds_fen={"critical_illness": 250, "charity": 50})],
    )
    (row,) = csv.DictReader(io.StringIO(stats_csv(stats).lstrip("\ufeff")))
    columns = list(row)
    after_buckets = columns.index("unsplit_fen") + 1
    assert columns[after_buckets : after_buckets + 3] == ["critical_illness_fen", "charity_fen", "adjustments_count"]
    assert (row["critical_illness_fen"], row["charity_fen"], row["insurance_fen"]) == ("250", "50", "500")
    # Then the adjustments and the net, a column per fund and the patient last, in the report's order.
    moved = [*(entry.code for entry in stats.funds), "out_of_pocket"]
    assert columns[-12:] == [f"{code}_adjustments_fen" for code in moved] + [f"{code}_net_fen" for code in moved]
    assert (row["critical_illness_adjustments_fen"], row["charity_adjustments_fen"]) == ("-10", "0")
    assert (row["out_of_pocket_net_fen"], row["adjustments_count"]) == ("80", "1")


def test_the_dashboard_draws_every_fund() -> None:
    funds = FundDirectory([THREE_TIER])
    amounts = Amounts(
        count=1,
        total=1000,
        insurance=500,
        hardship_aid=100,
        out_of_pocket=100,
        other_funds={"critical_illness": 250, "charity": 50},
    )
    figures = DashboardFigures(
        period_from=dt.date(2026, 5, 3),
        period_to=dt.date(2026, 5, 3),
        totals=amounts,
        days=[(dt.date(2026, 5, 3), amounts)],
        levels={"county": amounts},
        histogram=[0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        clinics=[],
        reconciliation_day=dt.date(2026, 5, 3),
        reconciliation=[],
        funds=funds.entries(["insurance", "veteran_subsidy", "hardship_aid", "critical_illness", "charity"]),
    )
    page = render(figures, who="finance-1 (finance)")
    assert 'id="total-fund-critical-illness">2.50<' in page and 'id="total-fund-charity">0.50<' in page
    assert 'data-fund-critical-illness="250"' in page
    assert "城乡居民大病保险 critical-illness insurance" in page
    assert 'id="total-insurance">5.00<' in page and "基本医保 insurance" in page
    # The day's stacked bar has a piece for each fund that paid, the new ones too.
    assert page.count("<title>2026-05-03 ") == 4


def test_the_explanation_names_each_fund_passed_in_and_keeps_the_three_labels() -> None:
    assert fund_label("insurance", "zh", {"insurance": "城乡居民基本医疗保险"}) == "基本医疗保险"
    assert fund_label("critical_illness", "en", {"critical_illness": "critical-illness insurance"}) == (
        "critical-illness insurance"
    )
    assert fund_label("critical_illness", "zh") == "critical_illness"  # no names: the code
    bill = Bill(
        clinic_level="county",
        visit_type="inpatient",
        service_date=dt.date(2026, 5, 3),
        referral=True,
        items=(LineItem(code="SURG", name="surgery", category="A", amount=40_000_000),),
    )
    status = PersonStatus(
        insured=True, hardship_tier="minimum_allowance", programmes={"charity": "child_major_disease"}
    )
    settlement = settle(bill, status, {}, THREE_TIER)
    names = {fund.code: fund.name for fund in THREE_TIER.funds}
    lines = explain(settlement, "zh", names)
    assert [line.split(" ")[0].rstrip(":") for line in lines[1:7]] == [
        "基本医疗保险",
        "城乡居民大病保险",
        "医疗救助",
        "倾斜救助",
        "优抚医疗补助",
        "慈善医疗救助",
    ]
    assert explain(settlement, "zh")[2].startswith("critical_illness ")  # without names, as before
