"""Three-way reconciliation beside the insurer's core, per day and per fund (docs/insurer.md, "Reconciling with
the insurer").

Three accounts of one day's settlements are set side by side:

* the insurer's: its 3202 detail (every settlement it committed, whatever became of it) and its 3201 totals of
  those still in force, with its verdict on the gateway's totals (``balanced``);
* the gateway's ledger: the settle messages it booked (``committed``, with their settlements), less the
  settlements reversed here;
* the clinic's list, when one is given: its HIS's own list of its settlements, as
  ``POST /v1/finance/reconciliation`` takes it.

The day is the China date on which the insurer committed a settlement, the date its 3201 and 3202 count by; a
message the insurer does not hold counts on the China date the gateway sent it. A message sent just before
midnight that the insurer committed after it therefore belongs to the later day: both sides are read over the
neighbouring days too, messages are matched by id, and each such message is named in ``crossed_midnight`` on
both days' reports, with the day it is reconciled on.

Everything is compared as it stands when asked, as the insurer answers: a reversal made days later counts.

Every discrepancy names the repair it needs and, where the sweeper (gateway/insurer.py) would finish it on its
own, whether it will. ``read_ledger`` is the SQL; ``gateway_totals`` and ``compare`` are the pure comparison;
``reconcile`` runs them around the insurer's two queries.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Final, Literal, TypedDict

import asyncpg
import msgspec

from adapters.finance import PAYER_FIELDS, ReconciliationError, SubmittedSettlement, other_funds
from adapters.fund_names import NAMED_FUNDS, FundDirectory
from adapters.insurer import protocol
from adapters.insurer.client import DetailRecord, InsurerClient, OutcomeUnknown, Totals, TotalsResult
from adapters.insurer_messages import OPEN_STATES
from adapters.report_models import (
    AmountDiffers,
    MissingAtClinic,
    MissingAtGateway,
    Report,
    ReversedAtClinicOnly,
    ReversedAtGatewayOnly,
)
from settlement.chain import Chain

# The fields of a clinic's list compared with the gateway's, before the other funds either side names.
_COLUMNS: Final = ("total", *PAYER_FIELDS)
# A cancel of this gateway's that the sweeper still finishes: sends again, then books the local reversal.
_CANCEL_OPEN: Final = ("sent", "answered")

# A clinic's list as the route and the command line take it: the lines of POST /v1/finance/reconciliation (a
# list of 16 MiB, the route's limit, holds about 100,000).
ClinicList = Annotated[list[SubmittedSettlement], msgspec.Meta(max_length=200_000)]


# ---------------------------------------------------------------- what the gateway holds


class BookedSettlement(msgspec.Struct, frozen=True, kw_only=True):
    """The settlement that booked a settle message, in fen; ``reversed`` when reversed here (at any time)."""

    settlement_id: uuid.UUID
    request_id: str
    total: int
    insurance: int
    veteran_subsidy: int
    hardship_aid: int
    out_of_pocket: int
    other_funds: dict[str, int]
    reversed: bool

    def amount(self, field: str) -> int:
        """The amount of a field (total, a money column) or of another fund, by its code."""
        if field in _COLUMNS:
            amount: int = getattr(self, field)
            return amount
        return self.other_funds.get(field, 0)


class LedgerMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A settle message as this gateway recorded it, with its settlement once booked (state ``committed``) and
    the cancels this gateway sent for that settlement (``cancel_state``: the one that counts, a confirmed one
    first)."""

    message_id: str
    state: str
    transaction_code: str
    visit_id: str
    clinic_id: str
    sent_at: dt.datetime
    insurer_settlement_id: str | None
    settlement: BookedSettlement | None
    cancel_message_ids: tuple[str, ...] = ()
    cancel_state: str | None = None


# Settle messages sent in a window (by the China time in their ids, which is when they were recorded and sent:
# the id's unique index finds them), or named by the insurer; each with its settlement and its cancels.
_LEDGER: Final = """
SELECT m.message_id, m.state, m.transaction_code, m.visit_id, m.clinic_id, m.sent_at, m.insurer_settlement_id,
       s.settlement_id, s.request_id, s.total, s.insurance, s.veteran_subsidy, s.hardship_aid, s.out_of_pocket,
       s.other_funds::text AS other_funds, s.reversal_id IS NOT NULL AS reversed,
       c.ids AS cancel_message_ids, c.state AS cancel_state
FROM insurer_messages m
LEFT JOIN settlements s
       ON m.state = 'committed' AND s.person_key = m.person_key AND s.settlement_id = m.settlement_id
LEFT JOIN LATERAL (
    SELECT array_agg(c.message_id ORDER BY c.sent_at) AS ids,
           (array_agg(c.state ORDER BY c.state IN ('committed', 'answered') DESC, c.sent_at DESC))[1] AS state
    FROM insurer_messages c
    WHERE c.person_key = m.person_key AND c.kind = 'cancel' AND c.settlement_id = m.settlement_id
) c ON m.settlement_id IS NOT NULL
WHERE m.kind = 'settle' AND ((m.message_id >= $1 AND m.message_id < $2) OR m.message_id = ANY($3::text[]))
ORDER BY m.message_id
"""


def id_bounds(institution_code: str, first: dt.date, last: dt.date) -> tuple[str, str]:
    """The message ids an institution made from the start of ``first`` to the end of ``last`` (China dates) lie
    in [low, high): an id is the code, yyyyMMddHHmmss and a sequence, so ids sort as their times do."""
    return f"{institution_code}{first:%Y%m%d}000000", f"{institution_code}{last + dt.timedelta(days=1):%Y%m%d}000000"


async def read_ledger(
    connection: asyncpg.Connection, institution_code: str, first: dt.date, last: dt.date, also: Sequence[str]
) -> list[LedgerMessage]:
    """This gateway's settle messages sent from ``first`` to ``last`` (China dates), and those with the ids
    ``also`` (the insurer's rows) whenever sent."""
    low, high = id_bounds(institution_code, first, last)
    rows = await connection.fetch(_LEDGER, low, high, list(also))
    return [_ledger_message(row) for row in rows]


def _ledger_message(row: asyncpg.Record) -> LedgerMessage:
    settlement = None
    if row["settlement_id"] is not None:
        settlement = BookedSettlement(
            settlement_id=row["settlement_id"],
            request_id=row["request_id"],
            total=row["total"],
            insurance=row["insurance"],
            veteran_subsidy=row["veteran_subsidy"],
            hardship_aid=row["hardship_aid"],
            out_of_pocket=row["out_of_pocket"],
            other_funds=other_funds(row["other_funds"]),
            reversed=row["reversed"],
        )
    return LedgerMessage(
        message_id=row["message_id"],
        state=row["state"],
        transaction_code=row["transaction_code"],
        visit_id=row["visit_id"],
        clinic_id=row["clinic_id"],
        sent_at=row["sent_at"],
        insurer_settlement_id=row["insurer_settlement_id"],
        settlement=settlement,
        cancel_message_ids=tuple(row["cancel_message_ids"] or ()),
        cancel_state=row["cancel_state"],
    )


def remote_fund_types(policies: Iterable[Chain]) -> dict[str, str]:
    """The funds the insurer pays under any policy version, by code, with the national fund type it names each."""
    return {
        fund.code: fund.fund_type for policy in policies for fund in policy.remote_funds if fund.fund_type is not None
    }


# ---------------------------------------------------------------- the report


class SideTotals(Report, frozen=True, kw_only=True):
    """One side's settlements in force on the day: how many, the bills' total, and what each of the insurer's
    funds paid on them (fen, by fund code)."""

    settlements: int
    total: int
    funds: dict[str, int]


class InsurerFund(Report, frozen=True, kw_only=True):
    """A fund the insurer pays: its code here, the national fund type the insurer names it by, its names."""

    code: str
    fund_type: str
    name: str
    name_en: str


class MissingAtInsurer(Report, frozen=True, kw_only=True, tag_field="kind", tag="missing_at_insurer"):
    """Booked here and not reversed, but not in force at the insurer: it holds no settlement for the message
    (``insurer_state`` absent), or one cancelled by a message this gateway never sent (``cancelled_by``: a refund
    made in the insurer's own client, say)."""

    message_id: str
    settlement_id: uuid.UUID
    request_id: str
    clinic_id: str
    insurer_settlement_id: str | None
    insurer_state: Literal["absent", "cancelled"]
    cancelled_by: str | None
    gateway_paid: dict[str, int]  # what the insurer's funds paid as booked here, by fund code
    sweeper_will_reverse: bool  # a cancel of this gateway's for it is still open: the sweeper books the reversal
    repair: str


class MissingHere(Report, frozen=True, kw_only=True, tag_field="kind", tag="missing_here"):
    """In force at the insurer, not booked here: an orphan. ``message_state`` is this gateway's record of the
    message (None: never recorded here); ``sweeper_will_undo`` when it is still open, so the sweeper reverses
    (2601) or cancels it once it is older than the grace."""

    message_id: str
    insurer_settlement_id: str
    visit_id: str
    settled_at: str  # the insurer's commit time, China time
    total: int
    insurer_paid: dict[str, int]  # by fund code (a fund type no policy names, by its type)
    message_state: str | None
    cancel_with: str | None  # the transaction that cancels it at the insurer: 2208 outpatient, 2305 inpatient
    sweeper_will_undo: bool
    repair: str


class FundDiffers(Report, frozen=True, kw_only=True, tag_field="kind", tag="amount_differs"):
    """In force on both sides with a different amount: ``field`` is a fund's code (its ``fund_type`` beside it)
    or ``total``, the bill's total; both figures in fen. A person must look."""

    message_id: str
    settlement_id: uuid.UUID
    request_id: str
    clinic_id: str
    insurer_settlement_id: str
    field: str
    fund_type: str | None
    gateway: int
    insurer: int
    repair: str


class CancelledAtInsurerOnly(Report, frozen=True, kw_only=True, tag_field="kind", tag="cancelled_at_insurer_only"):
    """This gateway's reversal is half done: the insurer confirmed its cancel (``cancelled_by``); the reversal
    is not booked here. ``cancel_state`` is the cancel's record here."""

    message_id: str
    settlement_id: uuid.UUID
    request_id: str
    clinic_id: str
    insurer_settlement_id: str
    cancelled_by: str
    cancel_state: str | None
    sweeper_will_reverse: bool
    repair: str


class ReversedHereOnly(Report, frozen=True, kw_only=True, tag_field="kind", tag="reversed_here_only"):
    """Reversed here, still in force at the insurer: the matching cancel is to do there."""

    message_id: str
    settlement_id: uuid.UUID
    request_id: str
    clinic_id: str
    insurer_settlement_id: str
    visit_id: str
    cancel_with: str | None
    cancel_state: str | None  # the cancel this gateway sent, if any
    sweeper_will_cancel: bool
    repair: str


InsurerDiscrepancy = MissingAtInsurer | MissingHere | FundDiffers | CancelledAtInsurerOnly | ReversedHereOnly


# The clinic's list against the gateway, named as POST /v1/finance/reconciliation names them, each with its repair.
class ClinicAmountDiffers(AmountDiffers, frozen=True, kw_only=True, tag="amount_differs"):
    repair: str


class ClinicReversedAtGatewayOnly(ReversedAtGatewayOnly, frozen=True, kw_only=True, tag="reversed_at_gateway_only"):
    repair: str


class ClinicReversedAtClinicOnly(ReversedAtClinicOnly, frozen=True, kw_only=True, tag="reversed_at_clinic_only"):
    repair: str


class ClinicMissingAtGateway(MissingAtGateway, frozen=True, kw_only=True, tag="missing_at_gateway"):
    repair: str


class ClinicMissingAtClinic(MissingAtClinic, frozen=True, kw_only=True, tag="missing_at_clinic"):
    repair: str


ClinicDiscrepancy = (
    ClinicAmountDiffers
    | ClinicReversedAtGatewayOnly
    | ClinicReversedAtClinicOnly
    | ClinicMissingAtGateway
    | ClinicMissingAtClinic
)


class CrossedMidnight(Report, frozen=True, kw_only=True):
    """A message the gateway sent on one China date and the insurer committed on the next: reconciled on the
    insurer's date (``reconciled_on``), and named on both days' reports."""

    message_id: str
    sent_at: dt.datetime
    settled_at: str  # the insurer's commit time, China time
    reconciled_on: dt.date


class InsurerReconciliation(Report, frozen=True, kw_only=True):
    """One day beside the insurer's core: each side's totals, the insurer's 3201 verdict on the gateway's, and
    every discrepancy with its repair. ``clean``: no discrepancy and the insurer says balanced."""

    day: dt.date
    institution_code: str
    clinic_id: str | None  # the clinic whose list was compared (None: every clinic's)
    clean: bool
    balanced: bool  # the insurer's 3201 verdict on the gateway's totals
    insurer_says: str  # its words (stmt_rslt_dscr)
    funds: list[InsurerFund]
    insurer: SideTotals  # its 3201 totals
    gateway: SideTotals
    clinic: SideTotals | None  # the list's own totals, when a list was given
    matched_count: int  # settlements in force on both sides, to the fen
    discrepancy_counts: dict[str, int]  # only the kinds found, in the order first found
    discrepancies: list[InsurerDiscrepancy]
    clinic_discrepancy_counts: dict[str, int]
    clinic_discrepancies: list[ClinicDiscrepancy]
    crossed_midnight: list[CrossedMidnight]


# ---------------------------------------------------------------- the comparison (pure)


def china_date(moment: dt.datetime) -> dt.date:
    return moment.astimezone(protocol.CHINA_TIME).date()


def settled_on(record: DetailRecord) -> dt.date:
    """The China date the insurer committed a settlement (``yyyy-MM-dd HH:mm:ss``, China time). Raises ValueError
    for a time not in that form. (fromisoformat, not strptime: a tenth of the cost, on every row of a day.)"""
    text = record.settled_at
    if len(text) != 19 or text[10] != " ":
        raise ValueError(f"not a time in the form yyyy-MM-dd HH:mm:ss: {text[:40]!r}")
    return dt.datetime.fromisoformat(text).date()


@dataclass(frozen=True, slots=True)
class _Pair:
    """One message as each side holds it (None: not held there)."""

    message_id: str
    ours: LedgerMessage | None
    theirs: DetailRecord | None

    @property
    def booked(self) -> BookedSettlement | None:
        return None if self.ours is None else self.ours.settlement

    @property
    def standing_here(self) -> BookedSettlement | None:
        booked = self.booked
        return booked if booked is not None and not booked.reversed else None

    @property
    def in_force_there(self) -> bool:
        return self.theirs is not None and self.theirs.state == "settled"


def _pairs(
    day: dt.date, ledger: Sequence[LedgerMessage], detail: Sequence[DetailRecord]
) -> tuple[list[_Pair], list[CrossedMidnight]]:
    """The messages of ``day`` (the insurer's commit date, else the date the gateway sent it), matched by id, and
    those that crossed midnight into or out of it."""
    ours = {message.message_id: message for message in ledger}
    theirs = {record.msgid: record for record in detail}
    pairs: list[_Pair] = []
    crossed: list[CrossedMidnight] = []
    for message_id in sorted(ours.keys() | theirs.keys()):
        mine, insurer = ours.get(message_id), theirs.get(message_id)
        sent = None if mine is None else china_date(mine.sent_at)
        settled = None if insurer is None else settled_on(insurer)
        reconciled_on = settled if settled is not None else sent
        if mine is not None and insurer is not None and sent != settled and day in (sent, settled):
            assert settled is not None
            crossed.append(
                CrossedMidnight(
                    message_id=message_id, sent_at=mine.sent_at, settled_at=insurer.settled_at, reconciled_on=settled
                )
            )
        if reconciled_on == day:
            pairs.append(_Pair(message_id, mine, insurer))
    return pairs, crossed


def _by_type(booked: BookedSettlement, fund_types: Mapping[str, str]) -> dict[str, int]:
    """What the insurer's funds paid on a settlement as booked here, by national fund type."""
    paid: dict[str, int] = {}
    for code, fund_type in fund_types.items():
        paid[fund_type] = paid.get(fund_type, 0) + booked.amount(code)
    return paid


def gateway_totals(
    day: dt.date, ledger: Sequence[LedgerMessage], detail: Sequence[DetailRecord], fund_types: Mapping[str, str]
) -> Totals:
    """The gateway's totals of the day as the insurer's 3201 takes them: settlements booked here and not
    reversed, by national fund type."""
    count = total = 0
    by_type: dict[str, int] = dict.fromkeys(fund_types.values(), 0)
    for pair in _pairs(day, ledger, detail)[0]:
        booked = pair.standing_here
        if booked is None:
            continue
        count += 1
        total += booked.total
        for fund_type, amount in _by_type(booked, fund_types).items():
            by_type[fund_type] += amount
    return Totals(count=count, total=total, fund_paid=sum(by_type.values()), by_fund_type=by_type)


def check_clinic_list(clinic_list: Sequence[SubmittedSettlement]) -> None:
    """Refuse a list the comparison cannot read, as POST /v1/finance/reconciliation does: a fund with a field of
    its own given in other_funds, or a settlement listed twice."""
    seen: set[uuid.UUID] = set()
    for index, item in enumerate(clinic_list):
        for code in item.other_funds:
            if code in NAMED_FUNDS or code in _COLUMNS:
                raise ReconciliationError(
                    f"{code} has a field of its own, not an entry in other_funds", f"clinic_list[{index}].other_funds"
                )
        if item.settlement_id in seen:
            raise ReconciliationError(f"settlement {item.settlement_id} is listed twice", "clinic_list")
        seen.add(item.settlement_id)


class _Funds:
    """The insurer's funds: code -> national fund type, and back (a type no policy names keeps its type)."""

    def __init__(self, fund_types: Mapping[str, str], directory: FundDirectory) -> None:
        self.directory = directory
        # In the policy book's order; funds it does not name (given without it) as given.
        known = [code for code in directory.ordered(fund_types) if directory.knows(code)]
        self.codes = [*known, *(code for code in fund_types if not directory.knows(code))]
        self.types = {code: fund_types[code] for code in self.codes}
        self.code_of: dict[str, str] = {}
        for code in self.codes:
            self.code_of.setdefault(fund_types[code], code)

    def code(self, fund_type: str) -> str:
        return self.code_of.get(fund_type, fund_type)

    def by_code(self, by_type: Mapping[str, int]) -> dict[str, int]:
        """Amounts by fund type as amounts by fund code: every fund the insurer pays, in order, 0 included."""
        paid = dict.fromkeys(self.codes, 0)
        for fund_type, amount in by_type.items():
            paid[self.code(fund_type)] = paid.get(self.code(fund_type), 0) + amount
        return paid

    def entries(self, also_types: Iterable[str]) -> list[InsurerFund]:
        entries = []
        for fund_type in dict.fromkeys([*self.code_of, *sorted(set(also_types) - set(self.code_of))]):
            code = self.code(fund_type)
            entry = self.directory.entry(code) if code != fund_type else None
            entries.append(
                InsurerFund(
                    code=code,
                    fund_type=fund_type,
                    name=entry.name if entry else fund_type,
                    name_en=entry.name_en if entry else fund_type,
                )
            )
        return entries


def compare(
    day: dt.date,
    ledger: Sequence[LedgerMessage],
    detail: Sequence[DetailRecord],
    insurer_totals: TotalsResult,
    *,
    institution_code: str,
    fund_types: Mapping[str, str],
    funds: FundDirectory | None = None,
    clinic_list: Sequence[SubmittedSettlement] | None = None,
    clinic_id: str | None = None,
) -> InsurerReconciliation:
    """The three sides of ``day`` compared: ``ledger`` (``read_ledger`` over the neighbouring days too),
    ``detail`` (3202 over the same days), ``insurer_totals`` (3201 for the day, sent ``gateway_totals``) and
    the clinic's list if given (checked by ``check_clinic_list``; compared with the settlements of
    ``clinic_id``, or of every clinic). ``fund_types``: the insurer's funds, code -> national fund type."""
    names = _Funds(fund_types, funds or FundDirectory())
    pairs, crossed = _pairs(day, ledger, detail)
    discrepancies: list[InsurerDiscrepancy] = []
    matched = 0
    gateway = _Sums()
    for pair in pairs:
        found = _insurer_discrepancies(pair, names)
        discrepancies.extend(found)
        booked = pair.standing_here
        if booked is not None:
            gateway.add(booked.total, {code: booked.amount(code) for code in fund_types})
            if not found:
                matched += 1
    clinic: SideTotals | None = None
    clinic_discrepancies: list[ClinicDiscrepancy] = []
    if clinic_list is not None:
        clinic, clinic_discrepancies = _clinic_side(pairs, clinic_list, clinic_id, names)
    insurer_side = insurer_totals.insurer
    insurer = SideTotals(
        settlements=insurer_side.count, total=insurer_side.total, funds=names.by_code(insurer_side.by_fund_type)
    )
    return InsurerReconciliation(
        day=day,
        institution_code=institution_code,
        clinic_id=clinic_id,
        clean=insurer_totals.balanced and not discrepancies and not clinic_discrepancies,
        balanced=insurer_totals.balanced,
        insurer_says=insurer_totals.description,
        funds=names.entries(insurer_side.by_fund_type),
        insurer=insurer,
        gateway=gateway.totals(names),
        clinic=clinic,
        matched_count=matched,
        discrepancy_counts=_counts(discrepancies),
        discrepancies=discrepancies,
        clinic_discrepancy_counts=_counts(clinic_discrepancies),
        clinic_discrepancies=clinic_discrepancies,
        crossed_midnight=crossed,
    )


class _Sums:
    def __init__(self) -> None:
        self.count = 0
        self.total = 0
        self.funds: dict[str, int] = {}

    def add(self, total: int, funds: Mapping[str, int]) -> None:
        self.count += 1
        self.total += total
        for code, amount in funds.items():
            self.funds[code] = self.funds.get(code, 0) + amount

    def totals(self, names: _Funds) -> SideTotals:
        funds = {code: self.funds.get(code, 0) for code in names.codes}
        return SideTotals(settlements=self.count, total=self.total, funds=funds)


def _counts(discrepancies: Sequence[msgspec.Struct]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for discrepancy in discrepancies:
        kind = str(discrepancy.__struct_config__.tag)
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _cancel_with(infno: str) -> str | None:
    visit_type = protocol.VISIT_TYPE_OF.get(infno)
    return None if visit_type is None else protocol.CANCEL_INFNO[visit_type]


class _BookedHere(TypedDict):
    """What names a message booked here in each discrepancy about it: the message, its settlement, the request
    that settled it and the clinic."""

    message_id: str
    settlement_id: uuid.UUID
    request_id: str
    clinic_id: str


def _booked_here(ours: LedgerMessage, booked: BookedSettlement) -> _BookedHere:
    return _BookedHere(
        message_id=ours.message_id,
        settlement_id=booked.settlement_id,
        request_id=booked.request_id,
        clinic_id=ours.clinic_id,
    )


def _insurer_discrepancies(pair: _Pair, names: _Funds) -> list[InsurerDiscrepancy]:
    """What is wrong between the gateway's record of one message and the insurer's, with the repair."""
    ours, theirs, booked = pair.ours, pair.theirs, pair.booked
    if booked is None:
        return [_missing_here(pair, names)] if pair.in_force_there else []
    assert ours is not None
    if booked.reversed:
        return [_reversed_here_only(ours, booked, pair)] if pair.in_force_there else []
    if not pair.in_force_there:
        if theirs is not None and theirs.cancel_msgid is not None and theirs.cancel_msgid in ours.cancel_message_ids:
            return [_cancelled_at_insurer_only(ours, booked, theirs.cancel_msgid)]
        return [_missing_at_insurer(ours, booked, theirs, names)]
    assert theirs is not None
    return _amounts_differ(ours, booked, theirs, names)


def _missing_here(pair: _Pair, names: _Funds) -> MissingHere:
    ours, theirs = pair.ours, pair.theirs
    assert theirs is not None
    state = None if ours is None else ours.state
    cancel_with = _cancel_with(theirs.infno)
    will = state in OPEN_STATES
    if state in ("sent", "reversing"):
        repair = (
            f"in force at the insurer but not booked here; message {pair.message_id} is still {state} here: the"
            " sweeper will reverse it (2601) once it is older than the grace"
        )
    elif will:
        repair = (
            f"in force at the insurer but not booked here; message {pair.message_id} is still {state} here: the"
            f" sweeper will cancel it ({cancel_with}) once it is older than the grace"
        )
    else:
        held = f"message {state} here" if state else "a message this gateway never recorded"
        repair = (
            f"in force at the insurer but not booked here ({held}): cancel it at the insurer ({cancel_with},"
            f" setl_id {theirs.insurer_settlement_id}, visit {theirs.mdtrt_id}), as the sweeper would an open one;"
            " the sweeper will not, the message being closed"
        )
    return MissingHere(
        message_id=pair.message_id,
        insurer_settlement_id=theirs.insurer_settlement_id,
        visit_id=theirs.mdtrt_id,
        settled_at=theirs.settled_at,
        total=theirs.total,
        insurer_paid=names.by_code(theirs.paid_by_fund_type),
        message_state=state,
        cancel_with=cancel_with,
        sweeper_will_undo=will,
        repair=repair,
    )


def _reversed_here_only(ours: LedgerMessage, booked: BookedSettlement, pair: _Pair) -> ReversedHereOnly:
    theirs = pair.theirs
    assert theirs is not None
    cancel_with = _cancel_with(theirs.infno)
    will = ours.cancel_state == "sent"
    repair = (
        f"reversed here, but in force at the insurer: cancel it there ({cancel_with}, setl_id"
        f" {theirs.insurer_settlement_id}, visit {theirs.mdtrt_id}); cancelling is idempotent"
    )
    if will:
        repair += "; the sweeper will, sending this gateway's open cancel again"
    return ReversedHereOnly(
        **_booked_here(ours, booked),
        insurer_settlement_id=theirs.insurer_settlement_id,
        visit_id=theirs.mdtrt_id,
        cancel_with=cancel_with,
        cancel_state=ours.cancel_state,
        sweeper_will_cancel=will,
        repair=repair,
    )


def _cancelled_at_insurer_only(ours: LedgerMessage, booked: BookedSettlement, cancel: str) -> CancelledAtInsurerOnly:
    will = ours.cancel_state in _CANCEL_OPEN
    if will:
        repair = (
            f"the insurer confirmed this gateway's cancel {cancel}; the sweeper will book the local reversal (the"
            f" cancel is {ours.cancel_state} here)"
        )
    else:
        repair = (
            f"the insurer confirmed this gateway's cancel {cancel}, but the reversal is not booked here and the"
            f" cancel is {ours.cancel_state} here: reverse it again (POST /v1/settlements/{booked.settlement_id}"
            "/reversal); its cancel finds it cancelled already"
        )
    return CancelledAtInsurerOnly(
        **_booked_here(ours, booked),
        insurer_settlement_id=ours.insurer_settlement_id or "",
        cancelled_by=cancel,
        cancel_state=ours.cancel_state,
        sweeper_will_reverse=will,
        repair=repair,
    )


def _missing_at_insurer(
    ours: LedgerMessage, booked: BookedSettlement, theirs: DetailRecord | None, names: _Funds
) -> MissingAtInsurer:
    reverse = f"reverse it here (POST /v1/settlements/{booked.settlement_id}/reversal)"
    will = theirs is not None and ours.cancel_state in _CANCEL_OPEN
    if theirs is None:
        repair = (
            f"booked here, but the insurer holds no settlement for message {ours.message_id}: check with the"
            f" insurer, then {reverse}"
        )
    else:
        repair = (
            f"booked here, but cancelled at the insurer by message {theirs.cancel_msgid} ({theirs.cancel_infno}),"
            f" which this gateway did not send (a refund in the insurer's own client?): check why, then {reverse};"
            " its cancel finds it cancelled already"
        )
        if will:
            repair += f"; the sweeper will, this gateway's cancel being {ours.cancel_state} here"
    return MissingAtInsurer(
        **_booked_here(ours, booked),
        insurer_settlement_id=ours.insurer_settlement_id,
        insurer_state="absent" if theirs is None else "cancelled",
        cancelled_by=None if theirs is None else theirs.cancel_msgid,
        gateway_paid={code: booked.amount(code) for code in names.codes},
        sweeper_will_reverse=will,
        repair=repair,
    )


def _amounts_differ(
    ours: LedgerMessage, booked: BookedSettlement, theirs: DetailRecord, names: _Funds
) -> list[InsurerDiscrepancy]:
    here = _by_type(booked, names.types)
    there = theirs.paid_by_fund_type
    compared: list[tuple[str, str | None, int, int]] = [("total", None, booked.total, theirs.total)]
    for fund_type in dict.fromkeys([*here, *sorted(there)]):
        compared.append((names.code(fund_type), fund_type, here.get(fund_type, 0), there.get(fund_type, 0)))
    return [
        FundDiffers(
            **_booked_here(ours, booked),
            insurer_settlement_id=theirs.insurer_settlement_id,
            field=field,
            fund_type=fund_type,
            gateway=gateway,
            insurer=insurer,
            repair=f"a person must look: the gateway booked {gateway} fen of {field}, the insurer holds {insurer} fen",
        )
        for field, fund_type, gateway, insurer in compared
        if gateway != insurer
    ]


def _clinic_side(
    pairs: Sequence[_Pair], clinic_list: Sequence[SubmittedSettlement], clinic_id: str | None, names: _Funds
) -> tuple[SideTotals, list[ClinicDiscrepancy]]:
    """The clinic's list against the settlements the gateway booked on the day (of ``clinic_id``, or of every
    clinic). A line that names none of them and nothing the insurer's funds paid is another bill (one the insurer
    never saw) and is left out, as a fund's reconciliation leaves out what its fund did not pay."""
    gateway = {
        pair.booked.settlement_id: pair.booked
        for pair in pairs
        if pair.booked is not None and pair.ours is not None and clinic_id in (None, pair.ours.clinic_id)
    }
    kept = sorted(
        (
            item
            for item in clinic_list
            if item.settlement_id in gateway or any(item.amount(code) for code in names.types)
        ),
        key=lambda item: item.settlement_id,
    )
    found: list[ClinicDiscrepancy] = []
    sums = _Sums()
    for item in kept:
        if not item.reversed:
            sums.add(item.total, {code: item.amount(code) for code in names.types})
        booked = gateway.pop(item.settlement_id, None)
        if booked is None:
            found.append(
                ClinicMissingAtGateway(
                    settlement_id=item.settlement_id,
                    submitted_total=item.total,
                    request_id=item.request_id,
                    repair="in the clinic's list, not booked by the gateway on this day: check the HIS (the bill may"
                    " have failed to settle, and can be settled again, or belong to another day)",
                )
            )
            continue
        found.extend(_clinic_differences(booked, item))
    for booked in sorted(gateway.values(), key=lambda booked: booked.settlement_id):
        found.append(
            ClinicMissingAtClinic(
                settlement_id=booked.settlement_id,
                gateway_total=booked.total,
                request_id=booked.request_id,
                repair="booked by the gateway, not in the clinic's list: add it to the HIS from the gateway's record"
                f" (GET /v1/settlements/{booked.settlement_id}), or reverse it here if the bill was never served",
            )
        )
    return sums.totals(names), found


def _clinic_differences(booked: BookedSettlement, item: SubmittedSettlement) -> list[ClinicDiscrepancy]:
    others = {code for code, amount in booked.other_funds.items() if amount}
    others |= {code for code, amount in item.other_funds.items() if amount}
    found: list[ClinicDiscrepancy] = [
        ClinicAmountDiffers(
            settlement_id=booked.settlement_id,
            field=field,
            gateway=booked.amount(field),
            submitted=item.amount(field),
            request_id=booked.request_id,
            repair=f"a person must look: the gateway booked {booked.amount(field)} fen of {field}, the clinic's list"
            f" says {item.amount(field)} fen; the gateway's record is what was paid",
        )
        for field in [*_COLUMNS, *sorted(others)]
        if booked.amount(field) != item.amount(field)
    ]
    if booked.reversed and not item.reversed:
        found.append(
            ClinicReversedAtGatewayOnly(
                settlement_id=booked.settlement_id,
                request_id=booked.request_id,
                repair="reversed by the gateway, not in the clinic's list: record the reversal in the HIS",
            )
        )
    elif item.reversed and not booked.reversed:
        found.append(
            ClinicReversedAtClinicOnly(
                settlement_id=booked.settlement_id,
                request_id=booked.request_id,
                repair=f"reversed in the clinic's list, not by the gateway: reverse it here (POST /v1/settlements/"
                f"{booked.settlement_id}/reversal), or correct the HIS",
            )
        )
    return found


# ---------------------------------------------------------------- the whole round

LedgerReader = Callable[[str, dt.date, dt.date, Sequence[str]], Awaitable[list[LedgerMessage]]]


async def reconcile(
    day: dt.date,
    *,
    client: InsurerClient,
    new_message_id: Callable[[], Awaitable[str]],
    ledger: LedgerReader,
    fund_types: Mapping[str, str],
    funds: FundDirectory | None = None,
    clinic_list: Sequence[SubmittedSettlement] | None = None,
    clinic_id: str | None = None,
) -> InsurerReconciliation:
    """Ask the insurer for the detail of the day and its neighbours (3202), read the gateway's messages over the
    same days, send the gateway's totals of the day (3201), and compare. ``new_message_id`` makes each query's
    id; ``ledger`` is ``read_ledger`` over a connection (``Reports.insurer_ledger``). Raises
    ``ReconciliationError`` for a clinic list that cannot be compared (before asking the insurer), and the
    client's errors (``InsurerRefused``, ``InsurerUnreachable``, ``OutcomeUnknown``)."""
    if clinic_list is not None:
        check_clinic_list(clinic_list)
    first, last = day - dt.timedelta(days=1), day + dt.timedelta(days=1)
    detail = await client.detail(await new_message_id(), first_day=first, last_day=last)
    for record in detail:
        try:
            settled_on(record)
        except ValueError:
            raise OutcomeUnknown(f"3202: setl_time {record.settled_at[:40]!r} is not a time") from None
    institution_code = client.config.institution_code
    messages = await ledger(institution_code, first, last, [record.msgid for record in detail])
    ours = gateway_totals(day, messages, detail, fund_types)
    totals = await client.totals(await new_message_id(), first_day=day, last_day=day, ours=ours)
    return compare(
        day,
        messages,
        detail,
        totals,
        institution_code=institution_code,
        fund_types=fund_types,
        funds=funds,
        clinic_list=clinic_list,
        clinic_id=clinic_id,
    )
