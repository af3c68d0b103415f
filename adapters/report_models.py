"""What each report answers: frozen msgspec Structs, one per shape, read by ``adapters.reports.Reports``.

The field names are the JSON (and MessagePack) field names the API has always
served, in the order it has served them; ``gateway.http.openapi`` publishes these
Structs' schemas as the report routes' answers. Money is int fen. Shares are
exact decimal strings ("0.5714"), never floats. Dates are ``dt.date`` (written
YYYY-MM-DD, as before); a moment is kept as the ISO text PostgreSQL's value gave.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

import msgspec

from settlement.eligibility import FundStanding


class Report(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A report's answer, or a part of one. Its JSON schema lists every field and allows no other
    (``forbid_unknown_fields``), so the OpenAPI document says exactly what a report holds."""


class Period(Report, frozen=True, kw_only=True):
    """A period of days, both ends included."""

    from_: dt.date = msgspec.field(name="from")
    to: dt.date


# ---------------------------------------------------------------- funds (adapters/fund_names.py)


class FundEntry(Report, frozen=True, kw_only=True):
    """A fund a report shows (or the patient): its code, its ledger account, and its names as the latest
    policy version that declares it gives them (its code when none does)."""

    code: str  # the fund's code in the policy (out_of_pocket for the patient)
    account: str  # its ledger account: insurance_fund, priority_care_fund, aid_fund, <code>_fund, patient
    name: str
    name_en: str


# ---------------------------------------------------------------- daily statement (adapters/finance.py)


class FundCounts(Report, frozen=True, kw_only=True):
    """One fund's (or the patient's) ledger lines on the day: amounts paid, and given back by reversals."""

    settlements_count: int
    settlements_fen: int
    reversals_count: int
    reversals_fen: int
    net_fen: int  # settlements - reversals + adjustments
    # Re-adjudication's adjustments booked on the day (adapters/readjudication.py): what the fund pays more
    # (positive) or less (negative) on bills settled before, and how many bills' lines moved.
    adjustments_count: int = 0
    adjustments_fen: int = 0


# Each fund's lines by ledger account, in the statement's order (``DailyStatement.funds``): every fund
# the ledger booked on the day, always insurance_fund, priority_care_fund and aid_fund, then the patient.
StatementFunds = dict[str, FundCounts]


class BucketCounts(Report, frozen=True, kw_only=True):
    """One bucket of the bills settled on the day, and of the bills whose reversal was booked on it:
    how many had a non-zero amount in it, and the amounts (a reversal gives its settlement's back)."""

    settlements_count: int
    settlements_fen: int
    reversals_count: int
    reversals_fen: int
    net_fen: int


class StatementBuckets(Report, frozen=True, kw_only=True):
    """The scope's bills split into the four buckets of the national settlement answer (adapters/bill_buckets.py):
    全自费 ``not_covered``, 超限价自付 ``over_limit``, 先行自付 ``self_pay_first`` and 政策范围内 ``eligible``.
    ``unsplit`` is what bills settled before the buckets were kept (migration 0015) have outside
    ``eligible``: their split is not guessed. The five add up to the scope's ``billed_fen``,
    ``reversed_fen`` and ``net_fen``, to the fen."""

    not_covered: BucketCounts
    over_limit: BucketCounts
    self_pay_first: BucketCounts
    eligible: BucketCounts
    unsplit: BucketCounts


class StatementTotal(Report, frozen=True, kw_only=True):
    """A day's settlements and reversals in one scope; the clinic is credited each bill's total."""

    settlements: int
    reversals: int
    billed_fen: int
    reversed_fen: int
    net_fen: int
    funds: StatementFunds
    buckets: StatementBuckets


class ClinicStatement(Report, frozen=True, kw_only=True):
    clinic_id: str
    name: str
    level: str
    region: str
    settlements: int
    reversals: int
    billed_fen: int
    reversed_fen: int
    net_fen: int
    funds: StatementFunds
    buckets: StatementBuckets


class LevelStatement(Report, frozen=True, kw_only=True):
    level: str
    settlements: int
    reversals: int
    billed_fen: int
    reversed_fen: int
    net_fen: int
    funds: StatementFunds
    buckets: StatementBuckets


class RegionStatement(Report, frozen=True, kw_only=True):
    region: str
    settlements: int
    reversals: int
    billed_fen: int
    reversed_fen: int
    net_fen: int
    funds: StatementFunds
    buckets: StatementBuckets


class StatementReversal(Report, frozen=True, kw_only=True):
    """A reversal booked on the day, naming the settlement it reverses and when that was booked."""

    reversal_id: uuid.UUID
    settlement_id: uuid.UUID
    clinic_id: str
    visit_type: str
    service_date: dt.date
    settled_on: dt.date | None
    total_fen: int
    insurance_fen: int
    veteran_subsidy_fen: int
    hardship_aid_fen: int
    out_of_pocket_fen: int
    terminal_id: str
    reason: str | None
    reversed_at: str  # ISO 8601 with the UTC offset, as PostgreSQL's timestamptz gave it
    # What the settlement's other funds (beyond the three above) paid, by fund code, in statement order.
    other_funds_fen: dict[str, int] = {}
    # The settlement's four buckets, and what of a bill settled before they were kept is outside eligible
    # (StatementBuckets): the five add up to total_fen.
    not_covered_fen: int
    over_limit_fen: int
    self_pay_first_fen: int
    eligible_fen: int
    unsplit_fen: int


class DailyStatement(Report, frozen=True, kw_only=True):
    """One booking day (China date) per clinic and fund, rolled up by level, region and in total."""

    date: dt.date
    closed: bool
    basis: str
    funds: list[str]  # the ledger accounts each block's ``funds`` holds, in order
    by_clinic: list[ClinicStatement]
    by_level: list[LevelStatement]
    by_region: list[RegionStatement]
    total: StatementTotal
    reversals: list[StatementReversal]
    # The same accounts with their fund codes and names, in the same order.
    accounts: list[FundEntry] = []


# ---------------------------------------------------------------- monthly statement (adapters/monthly_statement.py)


class MonthlyClinicLine(Report, frozen=True, kw_only=True):
    """One fund's lines at one clinic booked in the month: paid, given back by reversals, moved by
    re-adjudication's adjustments, and the net."""

    clinic_id: str
    name: str
    level: str
    region: str
    settlements_count: int
    settlements_fen: int
    reversals_count: int
    reversals_fen: int
    net_fen: int  # settlements - reversals + adjustments
    # Adjustments booked in the month on this clinic's bills (adapters/readjudication.py), as the daily
    # statement counts them (FundCounts): what the fund pays more (positive) or less, and how many bills moved.
    adjustments_count: int
    adjustments_fen: int


class MonthlyFund(Report, frozen=True, kw_only=True):
    """One fund (or the patient) over the month: its totals, and each clinic it paid, by clinic id."""

    code: str
    account: str
    name: str
    name_en: str
    settlements_count: int
    settlements_fen: int
    reversals_count: int
    reversals_fen: int
    net_fen: int  # settlements - reversals + adjustments
    adjustments_count: int
    adjustments_fen: int
    clinics: list[MonthlyClinicLine]


class MonthlyStatement(Report, frozen=True, kw_only=True):
    """One booking month per fund and clinic, the basis of disbursement (拨付) and clearing (清算).

    ``by_fund`` lists every fund the ledger booked in the month, and always the three named funds,
    in the policy book's order, the patient last."""

    month: str  # YYYY-MM
    period: Period
    closed: bool
    basis: str
    funds: list[FundEntry]
    by_fund: list[MonthlyFund]


# ---------------------------------------------------------------- reconciliation (adapters/finance.py)


class PayerSums(Report, frozen=True, kw_only=True):
    total: int
    insurance: int
    veteran_subsidy: int
    hardship_aid: int
    out_of_pocket: int
    other_funds: dict[str, int] = {}  # every other fund that paid on a settlement summed, by fund code


class AmountDiffers(Report, frozen=True, kw_only=True, tag_field="kind", tag="amount_differs"):
    settlement_id: uuid.UUID
    field: str  # total, insurance, veteran_subsidy, hardship_aid, out_of_pocket, or another fund's code
    gateway: int
    submitted: int
    request_id: str | None = None  # the clinic's own id for the bill, see Discrepancy


class ReversedAtGatewayOnly(Report, frozen=True, kw_only=True, tag_field="kind", tag="reversed_at_gateway_only"):
    settlement_id: uuid.UUID
    request_id: str | None = None  # the clinic's own id for the bill, see Discrepancy


class ReversedAtClinicOnly(Report, frozen=True, kw_only=True, tag_field="kind", tag="reversed_at_clinic_only"):
    settlement_id: uuid.UUID
    request_id: str | None = None  # the clinic's own id for the bill, see Discrepancy


class MissingAtGateway(Report, frozen=True, kw_only=True, tag_field="kind", tag="missing_at_gateway"):
    settlement_id: uuid.UUID
    submitted_total: int
    request_id: str | None = None  # the clinic's own id for the bill, see Discrepancy


class MissingAtClinic(Report, frozen=True, kw_only=True, tag_field="kind", tag="missing_at_clinic"):
    settlement_id: uuid.UUID
    gateway_total: int
    request_id: str | None = None  # the clinic's own id for the bill, see Discrepancy


# Each discrepancy names the clinic's own id for the bill (``request_id``, the one its terminal sent) beside
# the gateway's ``settlement_id``: the gateway's stored one, or for a settlement the gateway does not have,
# the one the submitted list gave (None when it gave none).
Discrepancy = AmountDiffers | ReversedAtGatewayOnly | ReversedAtClinicOnly | MissingAtGateway | MissingAtClinic
DiscrepancyKind = Literal[
    "amount_differs", "reversed_at_gateway_only", "reversed_at_clinic_only", "missing_at_gateway", "missing_at_clinic"
]


def discrepancy_kind(discrepancy: Discrepancy) -> DiscrepancyKind:
    kind: DiscrepancyKind = discrepancy.__struct_config__.tag  # type: ignore[assignment]
    return kind


class Reconciliation(Report, frozen=True, kw_only=True):
    """A submitted list against the gateway's for one booking day; ``confirmed`` once a clean one is audited."""

    date: dt.date
    clinic_id: str | None
    fund: str | None  # the ledger account of the fund reconciled (asked by its code or its account)
    clean: bool
    confirmed: bool
    submitted_count: int
    gateway_count: int
    matched_count: int
    matched_sums_fen: PayerSums
    submitted_sums_fen: PayerSums
    gateway_sums_fen: PayerSums
    discrepancy_counts: dict[DiscrepancyKind, int]  # only the kinds found, in the order first found
    discrepancies: list[Discrepancy]
    fund_code: str | None = None  # the fund reconciled: its code (out_of_pocket for the patient) and name
    fund_name: str | None = None


# ------------------------------------------------------------- totals over a range (adapters/range_reconciliation.py)


class TotalsDifference(Report, frozen=True, kw_only=True):
    field: str  # settlements (the count), total, insurance, veteran_subsidy, hardship_aid, out_of_pocket, a fund code
    gateway: int
    submitted: int


class DayTotals(Report, frozen=True, kw_only=True):
    """The gateway's settlements booked on one day of the range that stand at its end, and their total; and
    the re-adjudication adjustments booked on the day (a day with only adjustments is listed too)."""

    date: dt.date
    settlements: int
    total: int
    adjustments: int


class TotalsReconciliation(Report, frozen=True, kw_only=True):
    """A clinic's (or every clinic's) count and sums over a range of booking days beside the gateway's
    (3201-style, 对总账); ``days`` narrows a range that does not balance to the days to reconcile by list."""

    period: Period
    clinic_id: str | None
    balanced: bool
    basis: str
    gateway_count: int
    submitted_count: int
    gateway_sums_fen: PayerSums
    submitted_sums_fen: PayerSums
    differences: list[TotalsDifference]
    days: list[DayTotals]
    # Re-adjudication's adjustments booked in the range on the scope's bills: never compared (the clinic was
    # paid each bill once; an adjustment moves money between the funds and the patient, so ``total`` is 0),
    # shown as the daily statements show them. ``net_sums_fen`` is the standing settlements plus them.
    adjustments_count: int
    adjustments_sums_fen: PayerSums
    net_sums_fen: PayerSums


# ---------------------------------------------------------------- settlement search (adapters/settlement_search.py)


class SettlementSummary(Report, frozen=True, kw_only=True):
    """One settlement as a search lists it: whose (masked), where, when, the amounts in fen, reversed or not."""

    settlement_id: uuid.UUID
    request_id: str  # the clinic's own id for the bill, as its terminal sent it
    terminal_id: str
    clinic_id: str
    clinic_level: str
    visit_type: str
    person: str  # the masked national ID
    service_date: dt.date
    booked_on: dt.date
    settled_at: str  # ISO 8601 with the UTC offset
    total: int
    insurance: int
    veteran_subsidy: int
    hardship_aid: int
    out_of_pocket: int
    other_funds: dict[str, int]  # what the chain's other funds paid, by fund code
    reversed: bool
    reversal_id: uuid.UUID | None


class SettlementPage(Report, frozen=True, kw_only=True):
    """One page of a search, in booking order; ``next`` is the cursor of the next page (None on the last)."""

    period: Period  # the booking days searched
    clinic_id: str | None
    request_id: str | None
    limit: int
    items: list[SettlementSummary]
    next: str | None


# ---------------------------------------------------------------- a person's year (adapters/person_statement.py)


class FundYear(Report, frozen=True, kw_only=True):
    """What one fund (or the patient, ``out_of_pocket``) paid over the year's settlements that stand."""

    code: str
    name: str
    name_en: str
    paid_fen: int


class PersonYearStatement(Report, frozen=True, kw_only=True):
    """A person's service year: every settlement (reversed ones marked), what each fund paid on those that
    stand, and each fund's cap left as of ``as_of`` (settlement.eligibility.FundStanding, in fen)."""

    person: str  # the masked national ID
    name: str
    year: int
    as_of: dt.date
    settlements_count: int  # those that stand
    reversed_count: int
    total_fen: int
    funds: list[FundYear]  # the three named funds, every other fund that paid, then the patient
    caps: list[FundStanding]
    settlements: list[SettlementSummary]


# ---------------------------------------------------------------- finance statistics (adapters/finance_stats.py)


class GroupFigures(Report, frozen=True, kw_only=True):
    """One group's figures. Each dimension's group (``LevelGroup`` ...) puts its own key first: the
    value of the dimension the group stands for, under the dimension's name."""

    settlements: int
    people_served: int
    total_fen: int
    insurance_fen: int
    veteran_subsidy_fen: int
    hardship_aid_fen: int
    out_of_pocket_fen: int
    median_out_of_pocket_share: str | None  # an exact decimal, four places; None when no total was above 0
    out_of_pocket_share_distribution: list[int]  # ten buckets: 0-10 %, 10-20 %, ... 90-100 %
    insurance_cap_reached: int
    veteran_subsidy_cap_reached: int
    hardship_aid_cap_reached: int
    # What every other fund (beyond the three above) paid, by fund code: each fund of the report's
    # ``funds`` beyond the three, in that order.
    other_funds_fen: dict[str, int] = {}
    # The group's bills in the four buckets of the national settlement answer: 全自费, 超限价自付, 先行自付
    # and 政策范围内. ``unsplit_fen`` is what bills settled before the buckets were kept (migration 0015)
    # have outside eligible, not guessed; the five add up to total_fen.
    not_covered_fen: int
    over_limit_fen: int
    self_pay_first_fen: int
    eligible_fen: int
    unsplit_fen: int
    # Re-adjudication's adjustments booked in the period on the group's bills not reversed (a group's month is
    # the month they are booked in): how many, what each fund and the patient pay more (positive) or less by
    # them, and each one's net, what the settlements above paid plus the adjustments. Both by fund code: the
    # report's ``funds`` in order, then ``out_of_pocket``.
    adjustments_count: int
    adjustments_fen: dict[str, int]
    net_fen: dict[str, int]


class LevelGroup(GroupFigures, frozen=True):
    level: str


class RegionGroup(GroupFigures, frozen=True):
    region: str


class MonthGroup(GroupFigures, frozen=True):
    month: str  # YYYY-MM


class CategoryGroup(GroupFigures, frozen=True):
    category: str  # a priority-care category, or "none"


class TierGroup(GroupFigures, frozen=True):
    tier: str  # a hardship tier, or "none"


class ProgrammeGroup(GroupFigures, frozen=True):
    programme: str  # a payer that applied: one of the three to a person in its programme, another fund that paid


class ClinicGroup(GroupFigures, frozen=True):
    clinic: str  # a clinic id


class PersonGroup(GroupFigures, frozen=True):
    person: str  # the person's masked national ID


Dimension = Literal["level", "region", "month", "category", "tier", "programme", "clinic", "person"]


class FinanceStats(Report, frozen=True, kw_only=True, tag_field="by"):
    """Finance statistics grouped by one dimension, named in ``by``; one Struct per dimension below."""

    period: Period
    # Every fund the figures name (the three, then every other fund that paid in the period), with its names.
    funds: list[FundEntry] = []

    @property
    def by(self) -> Dimension:
        by: Dimension = self.__struct_config__.tag  # type: ignore[assignment]
        return by


class FinanceStatsByLevel(FinanceStats, frozen=True, kw_only=True, tag="level"):
    groups: list[LevelGroup]


class FinanceStatsByRegion(FinanceStats, frozen=True, kw_only=True, tag="region"):
    groups: list[RegionGroup]


class FinanceStatsByMonth(FinanceStats, frozen=True, kw_only=True, tag="month"):
    groups: list[MonthGroup]


class FinanceStatsByCategory(FinanceStats, frozen=True, kw_only=True, tag="category"):
    groups: list[CategoryGroup]


class FinanceStatsByTier(FinanceStats, frozen=True, kw_only=True, tag="tier"):
    groups: list[TierGroup]


class FinanceStatsByProgramme(FinanceStats, frozen=True, kw_only=True, tag="programme"):
    groups: list[ProgrammeGroup]


class FinanceStatsByClinic(FinanceStats, frozen=True, kw_only=True, tag="clinic"):
    groups: list[ClinicGroup]


class FinanceStatsByPerson(FinanceStats, frozen=True, kw_only=True, tag="person"):
    """The people served with the highest totals (at most adapters.finance_stats.PERSON_GROUPS), highest first."""

    groups: list[PersonGroup]


FinanceStatsReport = (
    FinanceStatsByLevel
    | FinanceStatsByRegion
    | FinanceStatsByMonth
    | FinanceStatsByCategory
    | FinanceStatsByTier
    | FinanceStatsByProgramme
    | FinanceStatsByClinic
    | FinanceStatsByPerson
)
# Per dimension: the report and its groups' Struct.
FINANCE_STATS: dict[Dimension, tuple[type[FinanceStatsReport], type[GroupFigures]]] = {
    "level": (FinanceStatsByLevel, LevelGroup),
    "region": (FinanceStatsByRegion, RegionGroup),
    "month": (FinanceStatsByMonth, MonthGroup),
    "category": (FinanceStatsByCategory, CategoryGroup),
    "tier": (FinanceStatsByTier, TierGroup),
    "programme": (FinanceStatsByProgramme, ProgrammeGroup),
    "clinic": (FinanceStatsByClinic, ClinicGroup),
    "person": (FinanceStatsByPerson, PersonGroup),
}


# ---------------------------------------------------------------- registry statistics (adapters/registry_stats.py)


class RegionCount(Report, frozen=True, kw_only=True):
    programme: str
    code: str
    region: str
    in_force: int
    added: int
    struck_off: int


class ProgrammeCount(Report, frozen=True, kw_only=True):
    programme: str
    code: str
    in_force: int
    added: int
    struck_off: int


class ServedByLevel(Report, frozen=True, kw_only=True):
    clinic_level: str
    people_served: int
    settlements: int


class RegistryStats(Report, frozen=True, kw_only=True):
    """People in force on ``on``; added and struck off in ``period``; people served by clinic level in it."""

    on: dt.date
    period: Period
    by_region: list[RegionCount]
    by_programme: list[ProgrammeCount]
    served_by_clinic_level: list[ServedByLevel]


# ---------------------------------------------------------------- dashboard figures (adapters/dashboard_figures.py)


class Amounts(Report, frozen=True, kw_only=True):
    """Settlements counted and their amounts in fen, reversed ones left out."""

    count: int = 0
    total: int = 0
    insurance: int = 0
    veteran_subsidy: int = 0
    hardship_aid: int = 0
    out_of_pocket: int = 0
    other_funds: dict[str, int] = {}  # what the chain's other funds paid, by fund code
    # The bills' four buckets (全自费, 超限价自付, 先行自付, 政策范围内), and what bills settled before they
    # were kept have outside eligible (``unsplit``, not guessed): the five add up to ``total``.
    not_covered: int = 0
    over_limit: int = 0
    self_pay_first: int = 0
    eligible: int = 0
    unsplit: int = 0

    def paid(self, fund: str) -> int:
        """What the fund with this code paid."""
        if fund in ("insurance", "veteran_subsidy", "hardship_aid"):
            paid: int = getattr(self, fund)
            return paid
        return self.other_funds.get(fund, 0)

    @property
    def funds_paid(self) -> int:
        """What every fund paid together: the total less the patient's share."""
        return self.total - self.out_of_pocket


class ClinicAmounts(Report, frozen=True, kw_only=True):
    clinic_id: str
    name: str
    level: str
    amounts: Amounts


class ClinicReconciliation(Report, frozen=True, kw_only=True):
    """A clinic with ledger lines booked on the day, and whether a clean reconciliation of it was confirmed."""

    clinic_id: str
    name: str
    level: str
    settlements: int
    reversals: int
    confirmed: bool


class DashboardFigures(Report, frozen=True, kw_only=True):
    """The finance dashboard's figures for a period of service dates (gateway/dashboard/pages.py draws them)."""

    period_from: dt.date
    period_to: dt.date
    totals: Amounts
    days: list[tuple[dt.date, Amounts]]  # every day of the period, in order
    levels: dict[str, Amounts]
    histogram: list[int]  # settlements by out of pocket / total: 0-10 %, ... 90-100 %
    clinics: list[ClinicAmounts]  # every clinic with settlements (at most MAX_CLINICS), the busiest first
    reconciliation_day: dt.date
    reconciliation: list[ClinicReconciliation]
    # Every fund the amounts name: the three, then every other fund of the period's settlements.
    funds: list[FundEntry] = []


class DashboardSettlements(Report, frozen=True, kw_only=True):
    """The settlements behind a dashboard figure: a period of service dates, one clinic, one clinic level or
    all, reversed ones left out (as the figures leave them out); a page of them in service-date order, and
    the totals of all of them, which equal the figure the list was opened from."""

    period_from: dt.date
    period_to: dt.date
    clinic_id: str | None
    level: str | None
    totals: Amounts  # of every settlement the list holds, not only this page's
    items: list[SettlementSummary]
    clinic_names: dict[str, str]  # the name of each clinic on the page, by clinic id
    next: str | None  # the next page's cursor (None on the last page)
    funds: list[FundEntry] = []  # the three funds, then every other fund the settlements paid from
