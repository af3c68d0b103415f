"""Finance reporting: daily statements per clinic and fund, and reconciliation against a clinic's list.

Daily statements are computed only from ``ledger_entries`` by ``booked_on`` (the China
date a line was booked). The ledger is append-only (a trigger refuses UPDATE, DELETE
and TRUNCATE) and every line is booked on the day it is written, so once a day is over
its statement can never change: a reversal made later is booked, and shows, on the day
it is made, naming the original settlement and its service date.

Reconciliation compares a submitted list of settlements (a clinic's or a fund's) with
the gateway's for one booking day. Both sides are walked in ``settlement_id`` order: the
gateway's side streamed with a cursor, the submitted side sorted in memory, and the two
merged like a sorted-merge join, so a day of tens of thousands of settlements needs no
per-settlement lookups. A settlement counts as reversed at the gateway when its reversal
was booked on or before the reconciled day, so a closed day reconciles the same way
whenever it is asked.

Every fund of any policy's chain has a ledger account (``settlement.decision.account_of``): a
statement lists each fund the ledger booked on the day, by its code, account and name (from the
policy book, ``adapters.fund_names``), and a reconciliation can be a list of any such fund. The
three funds with money columns of their own keep their fields; what the others paid is in
``other_funds``, by fund code, as the settlements table keeps it.

Each scope of a statement also splits its bills into the four buckets of the national settlement
answer (全自费, 超限价自付, 先行自付, 政策范围内; ``adapters.bill_buckets``), with the settlements and
reversals booked on the day, from the same append-only rows the ledger view books them from (by the
same ``booked_on``), so those too never change once the day is over. A bill settled before the
buckets were kept counts what it has outside eligible as ``unsplit``: its split is not guessed.

Both answer the Structs of ``adapters.report_models``, and the gateway reads them through
``adapters.reports.Reports``. Confirming a clean reconciliation is the one write here:
``Confirmations``, on the primary.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Annotated, Any

import asyncpg
import msgspec

from adapters import adjustment_orders
from adapters.bill_buckets import BUCKET_NAMES, BUCKETS, bucket_amounts, bucket_values
from adapters.fund_names import NAMED_FUNDS, PATIENT, FundDirectory, code_of
from adapters.report_models import (
    AmountDiffers,
    BucketCounts,
    ClinicStatement,
    DailyStatement,
    Discrepancy,
    DiscrepancyKind,
    FundCounts,
    FundEntry,
    LevelStatement,
    MissingAtClinic,
    MissingAtGateway,
    PayerSums,
    Reconciliation,
    RegionStatement,
    ReversedAtClinicOnly,
    ReversedAtGatewayOnly,
    StatementBuckets,
    StatementFunds,
    StatementReversal,
    StatementTotal,
    discrepancy_kind,
)
from settlement.decision import PAYER_ACCOUNTS

# The accounts every statement lists, whatever the day booked, and their settlements columns: the
# three funds with columns of their own, then the patient. Any other fund is in ``other_funds``.
FUNDS: dict[str, str] = dict(PAYER_ACCOUNTS)
PAYER_FIELDS = tuple(FUNDS.values())

# What the ledger lines ``l`` of each kind count and move, as the daily and the monthly statements show them: a
# line of 0 fen is not counted, and a reversal's lines (negative) are shown as what it took back.
LEDGER_KIND_TOTALS = """
       count(*) FILTER (WHERE l.kind = 'settlement' AND l.amount <> 0) AS settlements_count,
       coalesce(sum(l.amount) FILTER (WHERE l.kind = 'settlement'), 0)::bigint AS settlements_fen,
       count(*) FILTER (WHERE l.kind = 'reversal' AND l.amount <> 0) AS reversals_count,
       coalesce(-sum(l.amount) FILTER (WHERE l.kind = 'reversal'), 0)::bigint AS reversals_fen,
       count(*) FILTER (WHERE l.kind = 'adjustment' AND l.amount <> 0) AS adjustments_count,
       coalesce(sum(l.amount) FILTER (WHERE l.kind = 'adjustment'), 0)::bigint AS adjustments_fen
""".strip()

_DAY_LINES = f"""
SELECT l.clinic_id, l.account,
       {LEDGER_KIND_TOTALS}
FROM ledger_entries l
WHERE l.booked_on = $1
GROUP BY 1, 2
"""

# The day's bills in their four buckets (adapters/bill_buckets.py), per clinic: the settlements booked on the
# day, and the settlements whose reversal was booked on it, as the ledger books them (by the same booked_on).
_DAY_BUCKETS = f"""
SELECT d.clinic_id, b.bucket,
       count(*) FILTER (WHERE d.kind = 'settlement' AND b.amount <> 0) AS settlements_count,
       coalesce(sum(b.amount) FILTER (WHERE d.kind = 'settlement'), 0)::bigint AS settlements_fen,
       count(*) FILTER (WHERE d.kind = 'reversal' AND b.amount <> 0) AS reversals_count,
       coalesce(sum(b.amount) FILTER (WHERE d.kind = 'reversal'), 0)::bigint AS reversals_fen
FROM (
    SELECT 'settlement' AS kind, s.clinic_id, s.total, s.eligible, s.self_pay_first, s.over_limit
    FROM settlements s WHERE s.booked_on = $1
    UNION ALL
    SELECT 'reversal', s.clinic_id, s.total, s.eligible, s.self_pay_first, s.over_limit
    FROM reversals r JOIN settlements s ON s.person_key = r.person_key AND s.settlement_id = r.settlement_id
    WHERE r.booked_on = $1
) d
CROSS JOIN LATERAL (VALUES {bucket_values("d")}) AS b(bucket, amount)
GROUP BY 1, 2
"""

_REVERSAL_BUCKETS = ", ".join(f"{amount} AS {bucket}" for bucket, amount in bucket_amounts("s").items())

_DAY_REVERSALS = f"""
SELECT r.reversal_id, r.settlement_id, s.clinic_id, s.visit_type, s.service_date,
       (SELECT min(o.booked_on) FROM ledger_entries o
         WHERE o.person_key = d.person_key AND o.settlement_id = d.settlement_id AND o.kind = 'settlement'
       ) AS settled_on,
       s.total, s.insurance, s.veteran_subsidy, s.hardship_aid, s.out_of_pocket, s.other_funds,
       {_REVERSAL_BUCKETS},
       r.terminal_id, r.reason, r.created_at
FROM (SELECT DISTINCT person_key, settlement_id FROM ledger_entries
      WHERE booked_on = $1 AND kind = 'reversal' AND account = 'clinic') d
JOIN reversals r ON r.person_key = d.person_key AND r.settlement_id = d.settlement_id
JOIN settlements s ON s.person_key = d.person_key AND s.settlement_id = d.settlement_id
ORDER BY r.created_at, r.settlement_id
"""

# The gateway's side of a reconciliation, in settlement_id order. $2 clinic (or NULL for
# every clinic); $3 a payer column that must be non-zero, or $4 another fund's code whose amount
# in other_funds must be (or both NULL for every settlement).
# A reversal is never booked before its settlement, so "reversed by the end of the day" is
# "a reversal line booked on the same day": both come from one day's slice of the ledger.
_GATEWAY_SIDE = """
WITH day AS (
    SELECT person_key, settlement_id, kind FROM ledger_entries
    WHERE booked_on = $1 AND account = 'clinic' AND ($2::text IS NULL OR clinic_id = $2)
)
SELECT s.settlement_id, s.total, s.insurance, s.veteran_subsidy, s.hardship_aid, s.out_of_pocket, s.other_funds,
       s.request_id, r.settlement_id IS NOT NULL AS reversed
FROM day l
JOIN settlements s ON s.person_key = l.person_key AND s.settlement_id = l.settlement_id
LEFT JOIN day r ON r.person_key = l.person_key AND r.settlement_id = l.settlement_id AND r.kind = 'reversal'
WHERE l.kind = 'settlement'
  AND ($3::text IS NULL
       OR ($3 = 'insurance' AND s.insurance <> 0) OR ($3 = 'veteran_subsidy' AND s.veteran_subsidy <> 0)
       OR ($3 = 'hardship_aid' AND s.hardship_aid <> 0) OR ($3 = 'out_of_pocket' AND s.out_of_pocket <> 0))
  AND ($4::text IS NULL OR coalesce((s.other_funds ->> $4)::bigint, 0) <> 0)
ORDER BY s.settlement_id
"""

# Whether any settlement booked on $1 names the fund $2 among its other funds (one day, by index).
_FUND_BOOKED_ON = "SELECT EXISTS (SELECT 1 FROM settlements WHERE booked_on = $1 AND other_funds ? $2)"


# ---------------------------------------------------------------- daily statements

_FUND_FIELDS = ("settlements_count", "settlements_fen", "reversals_count", "reversals_fen", "net_fen")
_FUND_LINE_FIELDS = (*_FUND_FIELDS, "adjustments_count", "adjustments_fen")  # buckets have no adjustments


def other_funds(value: str | dict[str, int] | None) -> dict[str, int]:
    """A settlement's ``other_funds`` column (jsonb, which asyncpg reads as text) as a dict."""
    if value is None:
        return {}
    if isinstance(value, str):
        return msgspec.json.decode(value, type=dict[str, int])
    return dict(value)


def statement_accounts(funds: FundDirectory, accounts: Iterable[str]) -> list[FundEntry]:
    """The statement's funds: the three named funds always, and every fund booked; in the policy
    book's order, the patient last."""
    codes = {code_of(account) for account in accounts if account not in ("clinic", PATIENT.account)}
    return [*funds.entries(codes | set(NAMED_FUNDS)), PATIENT]


class _Counts:
    """A scope's sums while the day's lines are added up; frozen into the report's Structs at the end."""

    def __init__(self, accounts: Iterable[str]) -> None:
        self.settlements = self.reversals = self.billed_fen = self.reversed_fen = self.net_fen = 0
        self.funds = {account: dict.fromkeys(_FUND_LINE_FIELDS, 0) for account in accounts}
        self.buckets = {bucket: dict.fromkeys(_FUND_FIELDS, 0) for bucket in BUCKETS}

    def add(self, other: _Counts) -> None:
        self.settlements += other.settlements
        self.reversals += other.reversals
        self.billed_fen += other.billed_fen
        self.reversed_fen += other.reversed_fen
        self.net_fen += other.net_fen
        for fund, counts in other.funds.items():
            for key, value in counts.items():
                self.funds[fund][key] += value
        for bucket, counts in other.buckets.items():
            for key, value in counts.items():
                self.buckets[bucket][key] += value

    def fields(self) -> dict[str, Any]:
        """The block's fields as the report's Structs take them."""
        funds: StatementFunds = {fund: FundCounts(**counts) for fund, counts in self.funds.items()}
        buckets = StatementBuckets(**{bucket: BucketCounts(**counts) for bucket, counts in self.buckets.items()})
        return {
            "settlements": self.settlements,
            "reversals": self.reversals,
            "billed_fen": self.billed_fen,
            "reversed_fen": self.reversed_fen,
            "net_fen": self.net_fen,
            "funds": funds,
            "buckets": buckets,
        }


async def daily_statement(
    connection: asyncpg.Connection, day: dt.date, *, today: dt.date, funds: FundDirectory | None = None
) -> DailyStatement:
    """The statement for one booking day: per clinic and fund, rolled up by level, region and in total.

    Its funds are every fund the ledger booked that day (and the three named ones, always), named
    from ``funds``, the policy book's directory. Each scope also splits its bills into the four
    buckets (``buckets``), read in the same snapshot from the rows the ledger books the day from."""
    directory = funds or FundDirectory()
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        lines = await connection.fetch(_DAY_LINES, day)
        buckets = await connection.fetch(_DAY_BUCKETS, day)
        reversals = await connection.fetch(_DAY_REVERSALS, day)
        clinic_ids = sorted({row["clinic_id"] for row in lines} | {row["clinic_id"] for row in buckets})
        clinics = {
            row["clinic_id"]: row
            for row in await connection.fetch(
                "SELECT clinic_id, name, level, region FROM clinics WHERE clinic_id = any($1::text[])", clinic_ids
            )
        }
    accounts = statement_accounts(directory, (row["account"] for row in lines))
    order = [entry.account for entry in accounts]
    blocks = {clinic_id: _Counts(order) for clinic_id in clinic_ids}
    for row in lines:
        block = blocks[row["clinic_id"]]
        if row["account"] == "clinic":  # the clinic is credited the bill total: -amount
            block.settlements = row["settlements_count"]
            block.reversals = row["reversals_count"]
            block.billed_fen = -row["settlements_fen"]
            block.reversed_fen = -row["reversals_fen"]
            block.net_fen = block.billed_fen - block.reversed_fen
        else:
            fund = block.funds[row["account"]]
            fund["settlements_count"] = row["settlements_count"]
            fund["settlements_fen"] = row["settlements_fen"]
            fund["reversals_count"] = row["reversals_count"]
            fund["reversals_fen"] = row["reversals_fen"]
            fund["adjustments_count"] = row["adjustments_count"]
            fund["adjustments_fen"] = row["adjustments_fen"]
            fund["net_fen"] = row["settlements_fen"] - row["reversals_fen"] + row["adjustments_fen"]
    for row in buckets:
        counts = blocks[row["clinic_id"]].buckets[row["bucket"]]
        counts["settlements_count"] = row["settlements_count"]
        counts["settlements_fen"] = row["settlements_fen"]
        counts["reversals_count"] = row["reversals_count"]
        counts["reversals_fen"] = row["reversals_fen"]
        counts["net_fen"] = row["settlements_fen"] - row["reversals_fen"]
    by_clinic = []
    by_level: dict[str, _Counts] = {}
    by_region: dict[str, _Counts] = {}
    total = _Counts(order)
    for clinic_id in clinic_ids:
        clinic = clinics.get(clinic_id)
        level = clinic["level"] if clinic else ""
        region = clinic["region"] if clinic else ""
        block = blocks[clinic_id]
        by_clinic.append(
            ClinicStatement(
                clinic_id=clinic_id, name=clinic["name"] if clinic else "", level=level, region=region, **block.fields()
            )
        )
        by_level.setdefault(level, _Counts(order)).add(block)
        by_region.setdefault(region, _Counts(order)).add(block)
        total.add(block)
    rank = {entry.code: index for index, entry in enumerate(accounts)}

    def reversal_funds(value: str | None) -> dict[str, int]:
        paid = other_funds(value)
        return {code: paid[code] for code in sorted(paid, key=lambda code: (rank.get(code, len(rank)), code))}

    return DailyStatement(
        date=day,
        closed=day < today,
        basis="ledger_entries booked on this China date; the ledger is append-only, so a closed day never changes",
        funds=order,
        by_clinic=by_clinic,
        by_level=[LevelStatement(level=level, **block.fields()) for level, block in sorted(by_level.items())],
        by_region=[RegionStatement(region=region, **block.fields()) for region, block in sorted(by_region.items())],
        total=StatementTotal(**total.fields()),
        reversals=[
            StatementReversal(
                reversal_id=row["reversal_id"],
                settlement_id=row["settlement_id"],
                clinic_id=row["clinic_id"],
                visit_type=row["visit_type"],
                service_date=row["service_date"],
                settled_on=row["settled_on"],
                total_fen=row["total"],
                insurance_fen=row["insurance"],
                veteran_subsidy_fen=row["veteran_subsidy"],
                hardship_aid_fen=row["hardship_aid"],
                out_of_pocket_fen=row["out_of_pocket"],
                terminal_id=row["terminal_id"],
                reason=row["reason"],
                reversed_at=row["created_at"].isoformat(),
                other_funds_fen=reversal_funds(row["other_funds"]),
                **{f"{bucket}_fen": row[bucket] for bucket in BUCKETS},
            )
            for row in reversals
        ],
        accounts=accounts,
    )


CSV_COLUMNS = (
    "date",
    "scope",
    "clinic_id",
    "clinic_name",
    "level",
    "region",
    "fund",
    "settlements_count",
    "settlements_fen",
    "reversals_count",
    "reversals_fen",
    "net_fen",
    "fund_code",
    "fund_name",
    "bucket",
    "bucket_name",
)


def statement_csv(statement: DailyStatement) -> str:
    """One row per scope (clinic, level, region, total) and fund, then one per scope and bucket; UTF-8
    with a BOM for spreadsheets.

    A fund's row has its ledger account in ``fund`` and closes with the fund's code and name. A
    bucket's row (全自费 ``not_covered``, 超限价自付 ``over_limit``, 先行自付 ``self_pay_first``, 政策范围内
    ``eligible``, and ``unsplit`` for bills settled before the buckets were kept) leaves the three fund
    columns empty and names the bucket in the last two: a scope's fund rows add up to its bills, and
    so do its bucket rows."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    day = statement.date.isoformat()
    entries = {entry.account: entry for entry in statement.accounts}
    # (scope, clinic_id, clinic name, level, region, the scope's funds, the scope's buckets)
    scopes: list[tuple[str, str, str, str, str, StatementFunds, StatementBuckets]] = [
        ("clinic", block.clinic_id, block.name, block.level, block.region, block.funds, block.buckets)
        for block in statement.by_clinic
    ]
    scopes += [("level", "", "", block.level, "", block.funds, block.buckets) for block in statement.by_level]
    scopes += [("region", "", "", "", block.region, block.funds, block.buckets) for block in statement.by_region]
    scopes.append(("total", "", "", "", "", statement.total.funds, statement.total.buckets))
    for scope, clinic_id, name, level, region, funds, buckets in scopes:
        where = [day, scope, clinic_id, name, level, region]
        for fund in statement.funds:
            counts = funds[fund]
            entry = entries.get(fund)
            writer.writerow(
                [
                    *where,
                    fund,
                    counts.settlements_count,
                    counts.settlements_fen,
                    counts.reversals_count,
                    counts.reversals_fen,
                    counts.net_fen,
                    entry.code if entry else code_of(fund),
                    entry.name if entry else code_of(fund),
                    "",
                    "",
                ]
            )
        for bucket in BUCKETS:
            part: BucketCounts = getattr(buckets, bucket)
            writer.writerow(
                [
                    *where,
                    "",
                    part.settlements_count,
                    part.settlements_fen,
                    part.reversals_count,
                    part.reversals_fen,
                    part.net_fen,
                    "",
                    "",
                    bucket,
                    BUCKET_NAMES[bucket][0],
                ]
            )
    return buffer.getvalue()


# ---------------------------------------------------------------- reconciliation


Fen = Annotated[int, msgspec.Meta(ge=0, le=10_000_000_000)]
# A fund's code, as a policy names it (settlement/chain_policy.py NAME); an account is a code and ``_fund``.
FundCode = Annotated[str, msgspec.Meta(pattern="^[a-z][a-z0-9_]{0,39}$")]
FundName = Annotated[
    str,
    msgspec.Meta(
        pattern="^[a-z][a-z0-9_]{0,63}$",
        extra_json_schema={
            "examples": ["insurance_fund", "critical_illness_fund", "critical_illness", "patient"],
            "description": "a fund's ledger account (insurance_fund, priority_care_fund, aid_fund, <code>_fund, "
            "patient) or its code (insurance, critical_illness, out_of_pocket); any fund a policy version "
            "declares, or the ledger booked that day (else unknown_fund)",
        },
    ),
]


class SubmittedSettlement(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One line of a clinic's (or fund's) list, amounts in fen as the clinic recorded them.

    ``other_funds``: what the chain's funds beyond the three with fields of their own paid, by
    fund code (``{"critical_illness": 309075}``); a fund left out paid nothing."""

    settlement_id: uuid.UUID
    total: Fen
    insurance: Fen
    veteran_subsidy: Fen
    hardship_aid: Fen
    out_of_pocket: Fen
    reversed: bool = False
    other_funds: Annotated[dict[FundCode, Fen], msgspec.Meta(max_length=32)] = {}
    # The clinic's own id for the bill, named in a discrepancy when the gateway has no such settlement.
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None

    def amount(self, field: str) -> int:
        """The amount of a field (total, a column) or of another fund, by its code."""
        if field in _COLUMNS:
            amount: int = getattr(self, field)
            return amount
        return self.other_funds.get(field, 0)


class ReconciliationRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A booking day's list; ``clinic_id`` omitted with ``fund`` set is a fund's list across clinics."""

    date: dt.date
    settlements: list[SubmittedSettlement]
    clinic_id: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None
    fund: FundName | None = None


class ReconciliationError(ValueError):
    def __init__(self, message: str, field: str, code: str = "validation_failed") -> None:
        super().__init__(message)
        self.field = field
        self.code = code


_COLUMNS = ("total", *PAYER_FIELDS)


class _Side:
    """One side's amounts of a settlement: the columns, and the other funds by code."""

    __slots__ = ("columns", "other")

    def __init__(self, columns: dict[str, int], other: dict[str, int]) -> None:
        self.columns = columns
        self.other = other

    def amount(self, field: str) -> int:
        return self.columns[field] if field in self.columns else self.other.get(field, 0)


class _Sums:
    def __init__(self) -> None:
        self.columns = dict.fromkeys(_COLUMNS, 0)
        self.other: dict[str, int] = {}

    def add(self, columns: dict[str, int], other: dict[str, int]) -> None:
        for name in self.columns:
            self.columns[name] += columns[name]
        for code, amount in other.items():
            self.other[code] = self.other.get(code, 0) + amount

    def frozen(self, order: FundDirectory) -> PayerSums:
        return PayerSums(**self.columns, other_funds={code: self.other[code] for code in order.ordered(self.other)})


async def _gateway_side(
    connection: asyncpg.Connection, day: dt.date, clinic_id: str | None, column: str | None, other: str | None
) -> AsyncIterator[asyncpg.Record]:
    async for row in connection.cursor(_GATEWAY_SIDE, day, clinic_id, column, other, prefetch=5_000):
        yield row


async def resolve_fund(
    connection: asyncpg.Connection, asked: str, day: dt.date, funds: FundDirectory
) -> FundEntry | None:
    """The fund a reconciliation names, by its ledger account or its code: the patient, one of the three
    named funds, any fund a policy version declares, or any other fund the ledger booked on ``day``."""
    if asked in (PATIENT.account, PATIENT.code):
        return PATIENT
    if asked in NAMED_FUNDS or funds.knows(asked):
        return funds.entry(asked)
    code = code_of(asked)
    if asked.endswith("_fund") and (code in NAMED_FUNDS or funds.knows(code)):
        return funds.entry(code)
    for candidate in dict.fromkeys((asked, code)):
        if candidate not in NAMED_FUNDS and await connection.fetchval(_FUND_BOOKED_ON, day, candidate):
            return funds.entry(candidate)
    return None


async def reconcile(
    connection: asyncpg.Connection, request: ReconciliationRequest, *, funds: FundDirectory | None = None
) -> Reconciliation:
    """Merge the submitted list with the gateway's, both in settlement_id order; name every difference."""
    directory = funds or FundDirectory()
    for index, item in enumerate(request.settlements):
        for code in item.other_funds:
            if code in NAMED_FUNDS or code in _COLUMNS:
                raise ReconciliationError(
                    f"{code} has a field of its own, not an entry in other_funds", f"settlements[{index}].other_funds"
                )
    fund: FundEntry | None = None
    field: str | None = None
    if request.fund is not None:
        fund = await resolve_fund(connection, request.fund, request.date, directory)
        if fund is None:
            known = ", ".join(entry.account for entry in [*directory.entries(NAMED_FUNDS), PATIENT])
            raise ReconciliationError(
                f"no fund {request.fund!r} in the policy book or in the ledger on {request.date.isoformat()}; "
                f"a fund is named by its ledger account ({known}, <code>_fund) or by its code",
                "fund",
                "unknown_fund",
            )
        field = fund.code  # the three named funds' and the patient's codes are their columns' names
    column = field if field in _COLUMNS else None
    other = field if field is not None and column is None else None
    submitted = sorted(
        (item for item in request.settlements if field is None or item.amount(field) != 0),
        key=lambda item: item.settlement_id,
    )
    for previous, item in itertools.pairwise(submitted):
        if previous.settlement_id == item.settlement_id:
            raise ReconciliationError(f"settlement {item.settlement_id} is listed twice", "settlements")
    discrepancies: list[Discrepancy] = []
    matched = 0
    matched_sums = _Sums()
    gateway_count = 0
    gateway_sums = _Sums()

    def compared(ours: _Side, theirs: SubmittedSettlement) -> list[str]:
        """The fields compared: the fund's own with ``fund``, else the columns and every other fund either names."""
        if field is not None:
            return [field]
        others = {code for code, amount in ours.other.items() if amount} | {
            code for code, amount in theirs.other_funds.items() if amount
        }
        return [*_COLUMNS, *directory.ordered(others)]

    def compare(ours: _Side, reversed_: bool, theirs: SubmittedSettlement, request_id: str) -> None:
        nonlocal matched
        settlement_id = theirs.settlement_id
        differs = False
        for name in compared(ours, theirs):
            if ours.amount(name) != theirs.amount(name):
                differs = True
                gateway, submitted_amount = ours.amount(name), theirs.amount(name)
                discrepancies.append(
                    AmountDiffers(
                        settlement_id=settlement_id,
                        field=name,
                        gateway=gateway,
                        submitted=submitted_amount,
                        request_id=request_id,
                    )
                )
        if reversed_ != theirs.reversed:
            differs = True
            discrepancies.append(
                ReversedAtGatewayOnly(settlement_id=settlement_id, request_id=request_id)
                if reversed_
                else ReversedAtClinicOnly(settlement_id=settlement_id, request_id=request_id)
            )
        if not differs:
            matched += 1
            if not theirs.reversed:
                matched_sums.add(ours.columns, ours.other)

    def missing_at_gateway(theirs: SubmittedSettlement) -> None:
        discrepancies.append(
            MissingAtGateway(
                settlement_id=theirs.settlement_id, submitted_total=theirs.total, request_id=theirs.request_id
            )
        )

    position = 0
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        async for row in _gateway_side(connection, request.date, request.clinic_id, column, other):
            gateway_count += 1
            ours = _Side({name: row[name] for name in _COLUMNS}, other_funds(row["other_funds"]))
            if not row["reversed"]:
                gateway_sums.add(ours.columns, ours.other)
            settlement_id = row["settlement_id"]
            while position < len(submitted) and submitted[position].settlement_id < settlement_id:
                missing_at_gateway(submitted[position])
                position += 1
            if position < len(submitted) and submitted[position].settlement_id == settlement_id:
                compare(ours, row["reversed"], submitted[position], row["request_id"])
                position += 1
            else:
                discrepancies.append(
                    MissingAtClinic(
                        settlement_id=settlement_id, gateway_total=row["total"], request_id=row["request_id"]
                    )
                )
        for theirs in submitted[position:]:
            missing_at_gateway(theirs)
    submitted_sums = _Sums()
    for item in submitted:
        if not item.reversed:
            submitted_sums.add({name: getattr(item, name) for name in _COLUMNS}, item.other_funds)
    kinds: dict[DiscrepancyKind, int] = {}
    for discrepancy in discrepancies:
        kind = discrepancy_kind(discrepancy)
        kinds[kind] = kinds.get(kind, 0) + 1
    return Reconciliation(
        date=request.date,
        clinic_id=request.clinic_id,
        fund=fund.account if fund else None,
        clean=not discrepancies,
        confirmed=False,
        submitted_count=len(submitted),
        gateway_count=gateway_count,
        matched_count=matched,
        matched_sums_fen=matched_sums.frozen(directory),
        submitted_sums_fen=submitted_sums.frozen(directory),
        gateway_sums_fen=gateway_sums.frozen(directory),
        discrepancy_counts=kinds,
        discrepancies=discrepancies,
        fund_code=fund.code if fund else None,
        fund_name=fund.name if fund else None,
    )


# ---------------------------------------------------------------- confirmation: the one write


async def record_confirmation(
    connection: asyncpg.Connection, result: Reconciliation, *, actor: str, request_id: str
) -> None:
    """A clean reconciliation is confirmed in the append-only audit trail."""
    subject = f"{result.date.isoformat()} {result.clinic_id or '*'} {result.fund or '*'}"
    details = {
        "date": result.date,
        "clinic_id": result.clinic_id,
        "fund": result.fund,
        "submitted_count": result.submitted_count,
        "gateway_count": result.gateway_count,
        "matched_count": result.matched_count,
        "matched_sums_fen": result.matched_sums_fen,
    }
    await connection.execute(
        "INSERT INTO audit_log (actor, action, subject, request_id, source, details)"
        " VALUES ($1, 'reconciliation.confirmed', $2, $3, 'api', $4::jsonb)",
        actor,
        subject,
        request_id,
        msgspec.json.encode(details).decode(),
    )


class Confirmations:
    """Writes a clean reconciliation's confirmation, on the primary: reports (adapters/reports.py) only read."""

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 5.0) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    async def close_order(self, order_id: uuid.UUID, *, actor: str, reference: str, request_id: str) -> str:
        """Mark an open adjustment order paid or recovered (adapters/adjustment_orders.py); its new status."""
        async with self._pool.acquire(timeout=self._acquire_timeout) as connection:
            return await adjustment_orders.close_order(
                connection, order_id, actor=actor, reference=reference, request_id=request_id
            )

    async def confirm(self, result: Reconciliation, *, actor: str, request_id: str) -> Reconciliation:
        """Audit a clean reconciliation as confirmed by ``actor``; the result, marked confirmed."""
        if not result.clean:
            raise ValueError("only a clean reconciliation is confirmed")
        async with self._pool.acquire(timeout=self._acquire_timeout) as connection:
            await record_confirmation(connection, result, actor=actor, request_id=request_id)
        return msgspec.structs.replace(result, confirmed=True)
