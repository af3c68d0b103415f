"""Finding settlements: by clinic, booking days and the clinic's request id, a page at a time; and by the
short number a receipt prints.

A search reads settlements booked from ``from`` to ``to`` (the index on booking day and clinic),
in the order they were booked: booking day, time, then id. Pages are cut by keyset, not by offset: the
cursor (``next``) names the last settlement of a page and the next page starts after it, so a page
costs the same however deep it is, and a settlement booked while someone pages lands in its place
rather than shifting every later page by one. The ledger is append-only: a page read again shows the
same settlements, only their ``reversed`` mark can have been set since.

People are shown by their masked national ID only, as everywhere in the gateway.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import NamedTuple

import asyncpg

from adapters.finance import other_funds
from adapters.report_models import Period, SettlementPage, SettlementSummary

# A page holds 1 to MAX_PAGE settlements; DEFAULT_PAGE when the caller does not say.
DEFAULT_PAGE = 50
MAX_PAGE = 500
# A search spans at most a year and a day of booking days.
MAX_SEARCH_DAYS = 367

# What ``summary`` reads of a settlement ``s`` and its person ``p``.
SUMMARY_COLUMNS = """s.settlement_id, s.request_id, s.terminal_id, s.clinic_id, s.clinic_level, s.visit_type,
       s.service_date, s.booked_on, s.created_at, s.total, s.insurance, s.veteran_subsidy, s.hardship_aid,
       s.out_of_pocket, s.other_funds, s.reversal_id, p.masked_id"""

_SEARCH = f"""
SELECT {SUMMARY_COLUMNS}
FROM settlements s
JOIN people p ON p.person_key = s.person_key
WHERE s.booked_on BETWEEN $1 AND $2
  AND ($3::text IS NULL OR s.clinic_id = $3)
  AND ($4::text IS NULL OR s.request_id = $4)
  AND ($5::date IS NULL OR (s.booked_on, s.created_at, s.settlement_id) > ($5, $6, $7))
ORDER BY s.booked_on, s.created_at, s.settlement_id
LIMIT $8
"""

_BY_PREFIX = "SELECT settlement_id FROM settlements WHERE settlement_id BETWEEN $1 AND $2 ORDER BY 1 LIMIT 2"


class Cursor(NamedTuple):
    """Where a page ended: the last settlement's day (its booking day in a search, its service date on the
    dashboard's list, ``adapters.dashboard_figures``), time and id."""

    day: dt.date
    created_at: dt.datetime
    settlement_id: uuid.UUID

    def token(self) -> str:
        """The cursor as an opaque URL-safe token."""
        text = f"{self.day.isoformat()}|{self.created_at.isoformat()}|{self.settlement_id}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """A token ``token()`` made; ValueError for anything else."""
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            day, moment, settlement_id = text.split("|")
            created_at = dt.datetime.fromisoformat(moment)
            if created_at.tzinfo is None:
                raise ValueError("no time zone")
            return cls(dt.date.fromisoformat(day), created_at, uuid.UUID(settlement_id))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ValueError("not a cursor this search gave") from None


class SearchError(ValueError):
    """A search that cannot be run, naming the query parameter at fault and a stable code."""

    def __init__(self, message: str, field: str, code: str = "validation_failed") -> None:
        super().__init__(message)
        self.field = field
        self.code = code


class Search(NamedTuple):
    """What to look for: booking days ``start``..``end``, optionally one clinic and one request id."""

    start: dt.date
    end: dt.date
    clinic_id: str | None = None
    request_id: str | None = None
    limit: int = DEFAULT_PAGE
    after: Cursor | None = None

    def check(self) -> None:
        if self.start > self.end:
            raise SearchError("from is after to", "from")
        if (self.end - self.start).days + 1 > MAX_SEARCH_DAYS:
            raise SearchError(f"a search spans at most {MAX_SEARCH_DAYS} booking days", "to", "range_too_wide")
        if not 1 <= self.limit <= MAX_PAGE:
            raise SearchError(f"limit must be 1 to {MAX_PAGE}", "limit")


async def search_settlements(connection: asyncpg.Connection, search: Search) -> SettlementPage:
    """One page of the settlements the search finds, and the cursor of the next page (None on the last)."""
    search.check()
    after = search.after
    rows = await connection.fetch(
        _SEARCH,
        search.start,
        search.end,
        search.clinic_id,
        search.request_id,
        after.day if after else None,
        after.created_at if after else None,
        after.settlement_id if after else None,
        search.limit + 1,  # one more than the page: whether there is a next page
    )
    page = rows[: search.limit]
    last = page[-1] if page else None
    more = len(rows) > search.limit and last is not None
    return SettlementPage(
        period=Period(from_=search.start, to=search.end),
        clinic_id=search.clinic_id,
        request_id=search.request_id,
        limit=search.limit,
        items=[summary(row) for row in page],
        next=Cursor(last["booked_on"], last["created_at"], last["settlement_id"]).token() if more and last else None,
    )


def summary(row: asyncpg.Record) -> SettlementSummary:
    """A row of ``SUMMARY_COLUMNS`` as a search lists it."""
    return SettlementSummary(
        settlement_id=row["settlement_id"],
        request_id=row["request_id"],
        terminal_id=row["terminal_id"],
        clinic_id=row["clinic_id"],
        clinic_level=row["clinic_level"],
        visit_type=row["visit_type"],
        person=row["masked_id"],
        service_date=row["service_date"],
        booked_on=row["booked_on"],
        settled_at=row["created_at"].isoformat(),
        total=row["total"],
        insurance=row["insurance"],
        veteran_subsidy=row["veteran_subsidy"],
        hardship_aid=row["hardship_aid"],
        out_of_pocket=row["out_of_pocket"],
        other_funds=other_funds(row["other_funds"]),
        reversed=row["reversal_id"] is not None,
        reversal_id=row["reversal_id"],
    )


async def settlements_with_prefix(connection: asyncpg.Connection, low: uuid.UUID, high: uuid.UUID) -> list[uuid.UUID]:
    """The ids in ``[low, high]`` (those starting with one receipt number's digits), at most two: one is the
    settlement, two say the number is shared."""
    return [row["settlement_id"] for row in await connection.fetch(_BY_PREFIX, low, high)]
