"""Re-adjudication in PostgreSQL: the work list, the runner, and the adjustments and orders it books.

A cause writes its work in its own transaction: a registry change with a past effective date
(``enqueue_registry``, from adapters/registry_store.py) and a reversal that has later bills of the
person-year (``WRITE_REVERSAL`` in adapters/settlement_sql.py) each add one ``readjudications`` row per
person-year they can change. ``(cause, person-year)`` is unique, so a cause never adjusts twice.

``run_one`` takes the oldest pending row (``FOR UPDATE SKIP LOCKED``: several gateways share the list,
none waits for another), locks the person-year's counters row (as a live settlement does, so the two
serialise), reads the year's settlements with the adjustments booked on them, settles them again
(``settlement.readjudication``), and in the same transaction books one adjustment per settlement that
changes, moves the counters by the corrections, writes the orders for finance and marks the row done.
Nothing is booked if any step fails: the row stays pending, or is marked ``needs_review`` when the
policy now refuses one of the bills or the corrected counters break their caps.

A reversal takes back the adjustments booked on its bill in its own transaction (``take_back``), and
with them the orders that hold their money: an open order is cancelled there and then, so finance cannot
pay money that no longer exists, and the re-adjudication the reversal queued re-issues what is still owed
of it (``settle_reversed_orders``). An order already paid or recovered stays so; the money taken back
then shows as a new order of the reversal's re-adjudication.

``Runner`` runs it in the background of a gateway, throttled to a number of person-years per second,
so a list import that back-dates ten thousand people does not crowd out the settle path.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

import asyncpg
import msgspec
import structlog

from adapters.catalogue_store import load_catalogue
from adapters.settlement_sql import counters_from, decode_record, json_text
from settlement.catalogue import Catalogue
from settlement.chain import Chain
from settlement.decision import FUND_ACCOUNTS
from settlement.readjudication import (
    NOTHING,
    OUT_OF_POCKET,
    Amounts,
    Correction,
    Order,
    PastSettlement,
    Readjudicated,
    orders_for,
    readjudicate,
)
from settlement.registry import Membership
from settlement.replay import HistoricBill, bill_of

log = structlog.get_logger("medsettle")

PolicyFor = Callable[[dt.date], Chain]

# The money columns an adjustment shares with a settlement; any other fund is in ``other_funds``.
NAMED_FUNDS: Final = tuple(FUND_ACCOUNTS)

# ---------------------------------------------------------------- causes


class RegistryCause(NamedTuple):
    """One person's registry changes in one list import or API call: the earliest date they change, and
    what changed, in words (masked ID only)."""

    person_key: bytes
    from_date: dt.date
    description: str


# One row per person-year that has a settlement on or after the change's date (nothing to adjust
# otherwise). Rows of the same cause and person-year keep the earliest date.
_ENQUEUE_REGISTRY: Final = """
INSERT INTO readjudications (person_key, year, cause_kind, cause_ref, cause, from_date)
SELECT c.person_key, y.year, 'registry', $1, c.cause, c.from_date
FROM unnest($2::bytea[], $3::date[], $4::text[]) AS c(person_key, from_date, cause)
CROSS JOIN LATERAL (
    SELECT DISTINCT extract(year FROM s.service_date)::int AS year FROM settlements s
    WHERE s.person_key = c.person_key AND s.service_date >= c.from_date
) y
ON CONFLICT (cause_kind, cause_ref, person_key, year) DO UPDATE
    SET from_date = least(readjudications.from_date, EXCLUDED.from_date)
RETURNING readjudication_id, person_key, year
"""


async def enqueue_registry(
    connection: asyncpg.Connection, causes: Sequence[RegistryCause], cause_ref: str
) -> list[tuple[int, bytes, int]]:
    """Queue the person-years ``causes`` can change, in the caller's transaction. Returns each queued
    row's id, person key and year."""
    if not causes:
        return []
    rows = await connection.fetch(
        _ENQUEUE_REGISTRY,
        cause_ref,
        [cause.person_key for cause in causes],
        [cause.from_date for cause in causes],
        [cause.description for cause in causes],
    )
    return [(row["readjudication_id"], bytes(row["person_key"]), row["year"]) for row in rows]


# ---------------------------------------------------------------- reading a person-year

_HISTORY: Final = """
SELECT settlement_id, clinic_id, visit_type, reversal_id IS NOT NULL AS reversed, record
FROM settlements
WHERE person_key = $1 AND service_date BETWEEN make_date($2, 1, 1) AND make_date($2, 12, 31)
ORDER BY service_date, created_at, settlement_id
"""

# The adjustments booked so far, summed per settlement: of a person-year, of one settlement, or booked by
# one re-adjudication.
_ADJUSTED: Final = """
SELECT settlement_id, sum(insurance)::bigint AS insurance, sum(veteran_subsidy)::bigint AS veteran_subsidy,
       sum(hardship_aid)::bigint AS hardship_aid, sum(out_of_pocket)::bigint AS out_of_pocket,
       array_agg(other_funds) AS other_funds, array_agg(counters) AS counters
FROM adjustments WHERE {where}
GROUP BY settlement_id
"""
_ADJUSTED_IN_YEAR: Final = _ADJUSTED.format(where="person_key = $1 AND year = $2")
_ADJUSTED_ON: Final = _ADJUSTED.format(where="person_key = $1 AND settlement_id = $2")
_ADJUSTED_BY: Final = _ADJUSTED.format(where="person_key = $1 AND readjudication_id = $2")

_MEMBERSHIPS: Final = (
    "SELECT programme, code, effective_from, struck_off_on FROM memberships WHERE person_key = $1"
    " ORDER BY programme, effective_from"
)


class PersonYear(NamedTuple):
    history: list[PastSettlement]
    clinics: dict[uuid.UUID, tuple[str, str]]  # settlement id -> (clinic, visit type)
    memberships: list[Membership]


def _funds(row: asyncpg.Record, other_funds: Sequence[str]) -> dict[str, int]:
    """An adjustment row's (or a sum of rows') money by fund code and ``out_of_pocket``, zeros left out."""
    funds = {fund: row[fund] for fund in (*NAMED_FUNDS, OUT_OF_POCKET) if row[fund]}
    for text in other_funds:
        for fund, value in counters_from(text).items():
            funds[fund] = funds.get(fund, 0) + value
    return {fund: value for fund, value in funds.items() if value}


def _adjusted(row: asyncpg.Record) -> Amounts:
    """The sum of a settlement's adjustments (a row of ``_ADJUSTED``)."""
    counters: dict[str, int] = {}
    for text in row["counters"]:
        for name, value in counters_from(text).items():
            counters[name] = counters.get(name, 0) + value
    return Amounts(_funds(row, row["other_funds"]), counters).plus(NOTHING)  # drops the zero counters


async def adjustments_of(
    connection: asyncpg.Connection, person_key: bytes, settlement_id: uuid.UUID
) -> list[tuple[dt.date, dict[str, int]]]:
    """Each adjustment booked on one settlement, oldest first: its booking day and its amounts by fund code."""
    rows = await connection.fetch(
        """SELECT booked_on, insurance, veteran_subsidy, hardship_aid, other_funds, out_of_pocket FROM adjustments
           WHERE person_key = $1 AND settlement_id = $2 ORDER BY adjustment_id""",
        person_key,
        settlement_id,
    )
    return [(row["booked_on"], _funds(row, [row["other_funds"]])) for row in rows]


async def adjusted_on(connection: asyncpg.Connection, person_key: bytes, settlement_id: uuid.UUID) -> Amounts:
    """The sum of the adjustments booked on one settlement (NOTHING for none)."""
    row = await connection.fetchrow(_ADJUSTED_ON, person_key, settlement_id)
    return NOTHING if row is None else _adjusted(row)


async def read_person_year(connection: asyncpg.Connection, person_key: bytes, year: int) -> PersonYear:
    """Everything a person-year's re-adjudication reads, in the caller's transaction."""
    adjusted = {
        row["settlement_id"]: _adjusted(row) for row in await connection.fetch(_ADJUSTED_IN_YEAR, person_key, year)
    }
    history = []
    clinics = {}
    for row in await connection.fetch(_HISTORY, person_key, year):
        record = decode_record(row["record"])
        settled = record.result
        history.append(
            PastSettlement(
                settlement_id=row["settlement_id"],
                historic=HistoricBill(bill_of(record.items, settled), settled),
                reversed=row["reversed"],
                adjusted=adjusted.get(row["settlement_id"], NOTHING),
            )
        )
        clinics[row["settlement_id"]] = (row["clinic_id"], row["visit_type"])
    memberships = [
        Membership(
            programme=row["programme"],
            code=row["code"],
            effective_from=row["effective_from"],
            struck_off_on=row["struck_off_on"],
        )
        for row in await connection.fetch(_MEMBERSHIPS, person_key)
    ]
    return PersonYear(history, clinics, memberships)


async def plan(
    connection: asyncpg.Connection, person_key: bytes, year: int, policy_for: PolicyFor, catalogue: Catalogue
) -> tuple[PersonYear, Readjudicated]:
    """What re-adjudicating the person-year now would book, without booking it (a dry run reads the
    registry its own transaction has changed)."""
    person_year = await read_person_year(connection, person_key, year)
    return person_year, readjudicate(person_year.history, person_year.memberships, policy_for, catalogue)


# ---------------------------------------------------------------- booking

_CLAIM: Final = """
SELECT readjudication_id, person_key, year, cause FROM readjudications
WHERE status = 'pending'
ORDER BY readjudication_id
LIMIT 1
FOR UPDATE SKIP LOCKED
"""

_LOCK_COUNTERS: Final = "SELECT counters, caps FROM accumulators WHERE person_key = $1 AND year = $2 FOR UPDATE"

_WRITE_ADJUSTMENTS: Final = """
INSERT INTO adjustments (person_key, settlement_id, readjudication_id, year, clinic_id, visit_type, booked_on,
                         insurance, veteran_subsidy, hardship_aid, other_funds, out_of_pocket, counters, created_at)
SELECT $1, a.settlement_id, $2, $3, a.clinic_id, a.visit_type, $4,
       a.insurance, a.veteran_subsidy, a.hardship_aid, a.other_funds, a.out_of_pocket, a.counters, $5
FROM unnest($6::uuid[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::jsonb[],
            $13::bigint[], $14::jsonb[])
    AS a(settlement_id, clinic_id, visit_type, insurance, veteran_subsidy, hardship_aid, other_funds,
         out_of_pocket, counters)
"""

_WRITE_COUNTERS: Final = """
UPDATE accumulators SET counters = $3::jsonb, caps = greatest_caps(caps, $4::jsonb), version = version + 1,
                        updated_at = $5
WHERE person_key = $1 AND year = $2
"""

_WRITE_ORDERS: Final = """
INSERT INTO adjustment_orders (order_id, readjudication_id, person_key, year, fund, kind, amount, status,
                               booked_on, created_at)
SELECT o.order_id, $1, $2, $3, o.fund, o.kind, o.amount, o.status, $4, $5
FROM unnest($6::uuid[], $7::text[], $8::text[], $9::bigint[], $10::text[]) AS o(order_id, fund, kind, amount, status)
"""

_DONE: Final = """
UPDATE readjudications SET status = $3, done_at = $4, booked_on = $5, adjusted = $6, detail = $7, carried = $8::jsonb
WHERE person_key = $1 AND readjudication_id = $2
"""

_AUDIT: Final = """
INSERT INTO audit_log (occurred_at, actor, action, subject, request_id, details)
VALUES ($1, 'readjudication', $2, $3, '', $4::jsonb)
"""


class Outcome(NamedTuple):
    """One person-year re-adjudicated: which work row, how many settlements were adjusted, the orders
    written, or why it needs a person (``needs_review``)."""

    readjudication_id: int
    adjusted: int
    orders: list[Order]
    needs_review: str = ""


def _columns(corrections: Sequence[Correction], clinics: dict[uuid.UUID, tuple[str, str]]) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(9)]
    for correction in corrections:
        funds = correction.change.funds
        others = {fund: value for fund, value in funds.items() if fund not in NAMED_FUNDS and fund != OUT_OF_POCKET}
        clinic_id, visit_type = clinics[correction.settlement_id]
        values = (
            correction.settlement_id,
            clinic_id,
            visit_type,
            *(funds.get(fund, 0) for fund in NAMED_FUNDS),
            json_text(others),
            funds.get(OUT_OF_POCKET, 0),
            json_text(correction.change.counters),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


async def book(
    connection: asyncpg.Connection,
    readjudication_id: int,
    person_key: bytes,
    year: int,
    *,
    policy_for: PolicyFor,
    catalogue: Catalogue,
    today: dt.date,
    now: dt.datetime,
) -> Outcome:
    """Re-adjudicate one person-year and book the result, in the caller's transaction, which must hold
    the work row. Takes the person-year's counters row lock first, as a settlement does."""
    locked = await connection.fetchrow(_LOCK_COUNTERS, person_key, year)
    person_year, result = await plan(connection, person_key, year, policy_for, catalogue)
    if result.refused is not None:
        settlement_id, error = result.refused
        reason = f"settlement {settlement_id} is now refused: {error.code}: {error}"
        await _finish(connection, person_key, readjudication_id, "needs_review", now, today, 0, reason)
        return Outcome(readjudication_id, 0, [], reason)
    if result.corrections and locked is None:  # settlements without their counters row: `check` reports it
        reason = "the person-year has settlements but no counters row"
        await _finish(connection, person_key, readjudication_id, "needs_review", now, today, 0, reason)
        return Outcome(readjudication_id, 0, [], reason)
    # What the cause itself took back already (a reversed bill's adjustments, booked with the reversal) is
    # part of what finance must act on, with the corrections; and so are the orders the reversal cancelled.
    booked = await connection.fetch(_ADJUSTED_BY, person_key, readjudication_id)
    taken_back = [Correction(row["settlement_id"], _adjusted(row)) for row in booked]
    reversed_bill = await connection.fetchval(_REVERSED_BY, person_key, readjudication_id)
    carried = (
        {}
        if reversed_bill is None
        else await settle_reversed_orders(connection, readjudication_id, person_key, year, reversed_bill, now=now)
    )
    if result.corrections:
        assert locked is not None
        counters = counters_from(locked["counters"])
        for name, change in result.counters.items():
            counters[name] = counters.get(name, 0) + change
        await connection.execute(
            _WRITE_ADJUSTMENTS,
            person_key,
            readjudication_id,
            year,
            today,
            now,
            *_columns(result.corrections, person_year.clinics),
        )
        await connection.execute(_WRITE_COUNTERS, person_key, year, json_text(counters), json_text(result.caps), now)
    # The administration of an adjustment (de-minimis, recovery) follows the policy in force when it is booked.
    policy = policy_for(today)
    orders = orders_for(
        [*taken_back, *result.corrections],
        de_minimis=policy.de_minimis,
        recover_overpayments=policy.recover_overpayments,
        carried=carried,
    )
    if orders:
        await connection.execute(
            _WRITE_ORDERS,
            readjudication_id,
            person_key,
            year,
            today,
            now,
            [uuid.uuid4() for _ in orders],
            [order.fund for order in orders],
            [order.kind for order in orders],
            [order.amount for order in orders],
            [order.status for order in orders],
        )
    adjusted = len(result.corrections) + len(taken_back)
    await _finish(connection, person_key, readjudication_id, "done", now, today, adjusted, "", carried)
    return Outcome(readjudication_id, adjusted, orders)


async def take_back(
    connection: asyncpg.Connection,
    readjudication_id: int,
    person_key: bytes,
    year: int,
    settlement_id: uuid.UUID,
    clinic: tuple[str, str],
    adjusted: Amounts,
    *,
    booked_on: dt.date,
    now: dt.datetime,
) -> None:
    """With a reversal, in its transaction, under the re-adjudication the reversal queued: book an adjustment
    that takes back every adjustment booked on the reversed bill (so the bill nets to nothing), and cancel
    the open orders that hold their money (``settle_reversed_orders``). That re-adjudication writes the
    orders for both with its own."""
    if adjusted:
        correction = Correction(settlement_id, NOTHING.plus(adjusted, -1))
        await connection.execute(
            _WRITE_ADJUSTMENTS,
            person_key,
            readjudication_id,
            year,
            booked_on,
            now,
            *_columns([correction], {settlement_id: clinic}),
        )
    await settle_reversed_orders(connection, readjudication_id, person_key, year, settlement_id, now=now)


async def _finish(
    connection: asyncpg.Connection,
    person_key: bytes,
    readjudication_id: int,
    status: str,
    now: dt.datetime,
    today: dt.date,
    adjusted: int,
    detail: str,
    carried: dict[str, int] | None = None,
) -> None:
    await connection.execute(
        _DONE, person_key, readjudication_id, status, now, today, adjusted, detail, json_text(carried or {})
    )
    await connection.execute(
        _AUDIT,
        now,
        f"readjudication.{status}",
        str(readjudication_id),
        msgspec.json.encode({"adjusted": adjusted, "detail": detail}).decode(),
    )


# ---------------------------------------------------------------- a reversed bill's orders

# Which bill a reversal's re-adjudication reverses (None for a registry change's).
_REVERSED_BY: Final = """
SELECT r.settlement_id FROM readjudications j
JOIN reversals r ON r.person_key = j.person_key AND r.reversal_id::text = j.cause_ref
WHERE j.person_key = $1 AND j.readjudication_id = $2 AND j.cause_kind = 'reversal'
"""

# The adjustments booked on one bill by every re-adjudication but one (the take-back of its own reversal).
_ADJUSTMENTS_ON: Final = """
SELECT readjudication_id, insurance, veteran_subsidy, hardship_aid, other_funds, out_of_pocket FROM adjustments
WHERE person_key = $1 AND settlement_id = $2 AND readjudication_id <> $3
"""

# The person-year's orders, locked: finance's close (adapters/adjustment_orders.py) waits, then finds one cancelled.
_ORDERS_OF_YEAR: Final = """
SELECT order_id, readjudication_id, fund, kind, amount, status, cancelled_by FROM adjustment_orders
WHERE person_key = $1 AND year = $2
ORDER BY order_id
FOR UPDATE
"""

_CANCEL_ORDERS: Final = """
WITH cancelled AS (
    UPDATE adjustment_orders SET status = 'cancelled', cancelled_by = $3, cancelled_at = $4, cancel_reason = $5
    WHERE person_key = $1 AND order_id = any($2::uuid[])
    RETURNING order_id
)
INSERT INTO audit_log (occurred_at, actor, action, subject, request_id, details)
SELECT $4, 'readjudication', 'adjustment_order.cancelled', order_id::text, '',
       jsonb_build_object('cancelled_by', $3::bigint, 'reason', $5::text)
FROM cancelled
"""


class _HeldOrder(NamedTuple):
    order_id: uuid.UUID
    readjudication_id: int
    fund: str
    kind: str
    amount: int
    status: str
    cancelled_by: int | None

    @property
    def owed(self) -> int:
        """The order's amount signed as a correction's: positive when the fund owes the patient."""
        return self.amount if self.kind == "payable" else -self.amount


async def settle_reversed_orders(
    connection: asyncpg.Connection,
    readjudication_id: int,
    person_key: bytes,
    year: int,
    settlement_id: uuid.UUID,
    *,
    now: dt.datetime,
) -> dict[str, int]:
    """Settle the orders that hold money of the adjustments booked on a reversed bill, under the
    re-adjudication its reversal queued (``readjudication_id``), in the caller's transaction, which holds the
    person-year's counters row. Returns, per fund, what that re-adjudication's orders must carry beyond its
    own adjustments (positive when owed to the patient).

    Each fund's part of each adjustment on the bill is in the order its re-adjudication wrote for that fund,
    or, once that order was cancelled, in the order that re-issued it (followed to the end). There:

    * open: the money is not paid yet. It is cancelled, and carried whole: re-issued net of what the reversal
      took back (if it held other bills' money too, that part is owed still).
    * cancelled by this re-adjudication already (the reversal's own transaction did it): carried whole.
    * reported or waived: that money never moved and never will, so it goes with the bill: the part carried
      cancels what the reversal took back of it.
    * paid or recovered, or no order (the re-adjudication's net was zero, or its re-issue is not booked yet):
      the money moved (or nothing did); what the reversal took back shows as a new order.

    Called twice for one reversal: by the reversal (it cancels; the result is not kept), and when its
    re-adjudication is booked (it cancels any order issued since, and computes what to carry)."""
    parts: dict[tuple[int, str], int] = {}
    for row in await connection.fetch(_ADJUSTMENTS_ON, person_key, settlement_id, readjudication_id):
        for fund, value in _funds(row, [row["other_funds"]]).items():
            if fund != OUT_OF_POCKET:
                parts[(row["readjudication_id"], fund)] = parts.get((row["readjudication_id"], fund), 0) + value
    if not parts:
        return {}
    orders = {
        (row["readjudication_id"], row["fund"]): _HeldOrder(**dict(row))
        for row in await connection.fetch(_ORDERS_OF_YEAR, person_key, year)
    }
    carried: dict[str, int] = {}
    whole: dict[uuid.UUID, _HeldOrder] = {}
    for (source, fund), part in parts.items():
        order = _holder(orders, source, fund, readjudication_id)
        if order is None or order.status in ("paid", "recovered"):
            continue
        if order.status in ("open", "cancelled"):
            whole[order.order_id] = order
        else:  # reported, waived
            carried[fund] = carried.get(fund, 0) + part
    still_open = [order.order_id for order in whole.values() if order.status == "open"]
    if still_open:
        reason = f"settlement {settlement_id} reversed; re-issued by re-adjudication {readjudication_id}"
        await connection.execute(_CANCEL_ORDERS, person_key, still_open, readjudication_id, now, reason)
    for order in whole.values():
        carried[order.fund] = carried.get(order.fund, 0) + order.owed
    return {fund: value for fund, value in carried.items() if value}


def _holder(orders: dict[tuple[int, str], _HeldOrder], source: int, fund: str, reissuer: int) -> _HeldOrder | None:
    """The order that holds a re-adjudication's money of a fund now: its own, or the one that re-issued it
    after a reversal cancelled it, and so on; an order ``reissuer`` cancelled is the end."""
    order = orders.get((source, fund))
    seen = set()
    while order is not None and order.status == "cancelled" and order.cancelled_by != reissuer:
        seen.add(order.order_id)
        order = orders.get((order.cancelled_by, fund)) if order.cancelled_by is not None else None
        if order is not None and order.order_id in seen:  # cannot happen: a re-issue is always a later order
            raise AssertionError(f"orders re-issue each other: {order.order_id}")
    return order


async def run_one(pool: asyncpg.Pool, *, policy_for: PolicyFor, catalogue: Catalogue, today: dt.date) -> Outcome | None:
    """Re-adjudicate the oldest pending person-year no other process holds; None when none is pending."""
    claimed = None
    async with pool.acquire() as connection:
        try:
            async with connection.transaction():
                claimed = await connection.fetchrow(_CLAIM)
                if claimed is None:
                    return None
                return await book(
                    connection,
                    claimed["readjudication_id"],
                    bytes(claimed["person_key"]),
                    claimed["year"],
                    policy_for=policy_for,
                    catalogue=catalogue,
                    today=today,
                    now=dt.datetime.now(dt.UTC),
                )
        except asyncpg.CheckViolationError as error:
            # Corrected counters past a cap the policy no longer allows, or below zero: nothing was booked.
            # A person must look; the row leaves the list so the runner does not retry it forever.
            assert claimed is not None
            reason = f"the corrected counters break a rule: {error.constraint_name}"
            async with connection.transaction():
                await _finish(
                    connection,
                    bytes(claimed["person_key"]),
                    claimed["readjudication_id"],
                    "needs_review",
                    dt.datetime.now(dt.UTC),
                    today,
                    0,
                    reason,
                )
            return Outcome(claimed["readjudication_id"], 0, [], reason)


async def run_pending(url: str, *, policy_for: PolicyFor, today: Callable[[], dt.date], limit: int) -> list[Outcome]:
    """Work up to ``limit`` pending person-years now, unthrottled, over a connection of this process's own,
    under the item catalogue as stored (``medsettle adjustments run``). The database must be migrated."""
    async with asyncpg.create_pool(url, min_size=1, max_size=1) as pool:
        async with pool.acquire() as connection:
            catalogue = await load_catalogue(connection)
        runner = Runner(pool, policy_for=policy_for, catalogue=lambda: catalogue, today=today, per_second=0)
        return await runner.drain(limit)


async def preview(
    connection: asyncpg.Connection,
    queued: Sequence[tuple[int, bytes, int]],
    *,
    policy_for: PolicyFor,
    catalogue: Catalogue,
) -> list[tuple[str, int, Readjudicated]]:
    """What re-adjudicating each queued person-year (work row id, person key, year) would book, with the
    person's masked ID, read in the caller's transaction (a registry dry run's, before it rolls back)."""
    planned = []
    for _, person_key, year in queued:
        masked = await connection.fetchval("SELECT masked_id FROM people WHERE person_key = $1", person_key)
        _, result = await plan(connection, person_key, year, policy_for, catalogue)
        planned.append((str(masked), year, result))
    return planned


async def backlog(pool: asyncpg.Pool) -> int:
    """How many person-years wait to be re-adjudicated."""
    return int(await pool.fetchval("SELECT count(*) FROM readjudications WHERE status = 'pending'"))


class Runner:
    """Works the list in the background, at most ``per_second`` person-years a second, so a large
    back-dated import is worked off over minutes instead of competing with live settlements."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        policy_for: PolicyFor,
        catalogue: Callable[[], Catalogue],
        today: Callable[[], dt.date],
        per_second: float,
        idle_wait: float = 1.0,
        on_done: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.pool = pool
        self.policy_for = policy_for
        self.catalogue = catalogue
        self.today = today
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.idle_wait = idle_wait
        self.on_done = on_done
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look at the list now (a cause was just written by this process)."""
        self._wake.set()

    async def _one(self) -> Outcome | None:
        return await run_one(self.pool, policy_for=self.policy_for, catalogue=self.catalogue(), today=self.today())

    async def drain(self, limit: int) -> list[Outcome]:
        """Work up to ``limit`` pending person-years now, unthrottled (the CLI, and tests)."""
        done = []
        for _ in range(limit):
            outcome = await self._one()
            if outcome is None:
                break
            done.append(outcome)
        return done

    async def run(self) -> None:
        """Until cancelled: one person-year, then a pause to keep to the rate; a wait when the list is empty."""
        while True:
            started = time.monotonic()
            try:
                outcome = await self._one()
            except (TimeoutError, OSError, asyncpg.PostgresError) as error:
                log.warning("readjudication_paused", error=type(error).__name__)
                outcome = None
            if outcome is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.idle_wait)
                continue
            if self.on_done is not None:
                self.on_done(outcome)
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
