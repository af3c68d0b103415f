"""Policy what-if: replay past settlements under a candidate policy and report what it would change.

Every settlement not reversed whose service date is in the window is settled again under the candidate
(``settlement.replay``), with the registry as it stood on its service date and the item catalogue version
in force then. Each person-year is replayed from 1 January, in service-date order, so the candidate's own
counters (deductibles met, year-to-date bases, caps used) are what they would have been had it been in
force all year; bills before the window are replayed for that, and reported on only inside it. Nothing is
written.

The settlements stream from one read-only snapshot, person by person, with the memberships alongside
(two cursors, merged on the person key): memory stays flat whatever the window, because a person's
figures are folded into the groups as soon as the next person starts.

Per fund and per group (``by``: fund, tier, level or region) the report gives what was paid and what
would be paid, the difference, how many people would pay less, more or the same out of pocket, and
the distribution of out-of-pocket shares before and after. Bills the candidate refuses are counted by
refusal code and left out of both sides.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple

import asyncpg
import msgspec

from adapters.fund_names import FundDirectory
from adapters.report_models import Period, Report
from adapters.settlement_sql import decode_record
from settlement.catalogue import Catalogue
from settlement.chain import Chain
from settlement.models import Settlement
from settlement.money import format_rate
from settlement.registry import Membership
from settlement.replay import HistoricBill, Replayed, bill_of, replay_person_year

GroupBy = Literal["fund", "tier", "level", "region"]
GROUP_BYS: Final[tuple[GroupBy, ...]] = ("fund", "tier", "level", "region")
FETCH: Final = 2_000  # rows per round trip of each cursor
YIELD_EVERY: Final = 200  # bills replayed between yields to the event loop (about 10 ms of CPU)
SHARE_BINS: Final = 100  # out-of-pocket shares are counted to the percent: flat memory, a median to 1 %
OUT_OF_POCKET: Final = "out_of_pocket"

Progress = Callable[[int, int], None]


# ---------------------------------------------------------------- the report


class FundImpact(Report, frozen=True, kw_only=True):
    """What one fund (or the patient, ``out_of_pocket``) paid on the group's bills, and would pay."""

    fund: str
    name: str
    name_en: str
    today: int
    would: int
    difference: int  # would - today


class ShareDistribution(Report, frozen=True, kw_only=True):
    """Out of pocket as a share of each bill's total: settlements per tenth ([0, 0.1), ..., [0.9, 1.0]),
    and the median to the percent (the lower edge of its percent, as a decimal; None with no bills)."""

    tenths: list[int]
    median: str | None


class GroupImpact(Report, frozen=True, kw_only=True):
    """The window's bills of one group: funds today and under the candidate, and who would pay more or
    less out of pocket (a person counts once per group, by their total over the group's bills)."""

    group: str
    settlements: int
    people: int
    total: int
    better_off: int
    worse_off: int
    unchanged: int
    funds: list[FundImpact]
    out_of_pocket: FundImpact
    share_today: ShareDistribution
    share_would: ShareDistribution


class WhatIfReport(Report, frozen=True, kw_only=True):
    """A candidate policy replayed over a window of settlements; nothing written."""

    candidate: str
    period: Period
    by: GroupBy
    settlements: int  # in the window, replayed and compared
    replayed: int  # all bills settled again, including those of the window's person-years before it
    refused: dict[str, int]  # bills of the window the candidate refuses, by refusal code (left out)
    total: GroupImpact
    groups: list[GroupImpact]


# ---------------------------------------------------------------- folding figures


@dataclass
class _Group:
    settlements: int = 0
    people: int = 0
    total: int = 0
    better_off: int = 0
    worse_off: int = 0
    unchanged: int = 0
    today: Counter[str] = field(default_factory=Counter)
    would: Counter[str] = field(default_factory=Counter)
    share_today: list[int] = field(default_factory=lambda: [0] * SHARE_BINS)
    share_would: list[int] = field(default_factory=lambda: [0] * SHARE_BINS)

    def add(self, settled: Settlement, again: Settlement, shares: tuple[int, int] | None) -> None:
        """One bill: what each fund and the patient paid and would pay, and its out-of-pocket share bins
        today and under the candidate (None for a bill of 0)."""
        self.settlements += 1
        self.total += settled.total
        today, would = self.today, self.would
        for trace in settled.traces:
            today[trace.payer] += trace.paid
        for trace in again.traces:
            would[trace.payer] += trace.paid
        today[OUT_OF_POCKET] += settled.out_of_pocket
        would[OUT_OF_POCKET] += again.out_of_pocket
        if shares is not None:
            self.share_today[shares[0]] += 1
            self.share_would[shares[1]] += 1

    def add_bills_of(self, other: _Group) -> None:
        """Another group's bills (not its people, who are counted once per group by ``_Folder.end_person``)."""
        self.settlements += other.settlements
        self.total += other.total
        self.today.update(other.today)
        self.would.update(other.would)
        self.share_today = [mine + theirs for mine, theirs in zip(self.share_today, other.share_today, strict=True)]
        self.share_would = [mine + theirs for mine, theirs in zip(self.share_would, other.share_would, strict=True)]


def _bin(part: int, whole: int) -> int:
    return min(part * SHARE_BINS // whole, SHARE_BINS - 1)


def _distribution(bins: list[int]) -> ShareDistribution:
    tenths = [sum(bins[start : start + SHARE_BINS // 10]) for start in range(0, SHARE_BINS, SHARE_BINS // 10)]
    count = sum(bins)
    median = None
    if count:
        seen = 0
        for index, number in enumerate(bins):
            seen += number
            if 2 * seen >= count:
                median = format_rate(index * 1_000_000 // SHARE_BINS)
                break
    return ShareDistribution(tenths=tenths, median=median)


class _Folder:
    """The report's figures, folded person by person."""

    def __init__(self, by: GroupBy, regions: dict[str, str], start: dt.date, end: dt.date) -> None:
        self.by = by
        self.regions = regions
        self.start = start
        self.end = end
        self.groups: dict[str, _Group] = {}
        self.total = _Group()
        self.settlements = 0
        self.replayed = 0
        self.refused: Counter[str] = Counter()
        self._person: dict[str, list[int]] = {}  # group -> [today, would] out of pocket, for the current person

    def add(self, replayed: Replayed, clinic_id: str) -> None:
        self.replayed += 1
        settled = replayed.historic.settled
        if not self.start <= settled.service_date <= self.end:
            return
        again = replayed.again
        if again is None:
            assert replayed.refused is not None
            self.refused[replayed.refused.code] += 1
            return
        self.settlements += 1
        shares = (
            (_bin(settled.out_of_pocket, settled.total), _bin(again.out_of_pocket, again.total))
            if settled.total
            else None
        )
        if self.by == "fund":  # a bill is in the group of every fund that paid or would pay, or in none
            self.total.add(settled, again, shares)
        # Otherwise each bill is in exactly one group, and the total's bills are the groups' summed once in
        # ``report`` rather than added here: half the fold's work a bill, on a path run a million times.
        today, would = settled.out_of_pocket, again.out_of_pocket
        for group in self._groups_of(replayed, clinic_id):
            target = self.groups.get(group)
            if target is None:
                target = self.groups[group] = _Group()
            target.add(settled, again, shares)
            self._add_to_person(group, today, would)
        self._add_to_person("", today, would)

    def _add_to_person(self, group: str, today: int, would: int) -> None:
        figures = self._person.get(group)
        if figures is None:
            self._person[group] = [today, would]
        else:
            figures[0] += today
            figures[1] += would

    def _groups_of(self, replayed: Replayed, clinic_id: str) -> list[str]:
        settled, again = replayed.historic.settled, replayed.again
        assert again is not None
        if self.by == "level":
            return [settled.clinic_level]
        if self.by == "region":
            return [self.regions.get(clinic_id, "unknown")]
        if self.by == "tier":
            return [replayed.status.hardship_tier or "none"]
        # By fund: every fund that paid, or would pay, on the bill.
        return sorted({trace.payer for trace in (*settled.traces, *again.traces) if trace.paid})

    def end_person(self) -> None:
        for group, (today, would) in self._person.items():
            target = self.total if group == "" else self.groups[group]
            target.people += 1
            if would < today:
                target.better_off += 1
            elif would > today:
                target.worse_off += 1
            else:
                target.unchanged += 1
        self._person.clear()

    def report(self, candidate: Chain, funds: FundDirectory) -> WhatIfReport:
        total = self.total
        if self.by != "fund":
            total = _Group(
                people=total.people, better_off=total.better_off, worse_off=total.worse_off, unchanged=total.unchanged
            )
            for group in self.groups.values():
                total.add_bills_of(group)
        return WhatIfReport(
            candidate=candidate.id,
            period=Period(from_=self.start, to=self.end),
            by=self.by,
            settlements=self.settlements,
            replayed=self.replayed,
            refused=dict(sorted(self.refused.items())),
            total=_impact("total", total, funds),
            groups=[_impact(name, group, funds) for name, group in sorted(self.groups.items())],
        )


def _impact(name: str, group: _Group, funds: FundDirectory) -> GroupImpact:
    codes = funds.ordered(code for code in (*group.today, *group.would) if code != OUT_OF_POCKET)
    return GroupImpact(
        group=name,
        settlements=group.settlements,
        people=group.people,
        total=group.total,
        better_off=group.better_off,
        worse_off=group.worse_off,
        unchanged=group.unchanged,
        funds=[_fund(code, group, funds) for code in codes],
        out_of_pocket=_fund(OUT_OF_POCKET, group, funds),
        share_today=_distribution(group.share_today),
        share_would=_distribution(group.share_would),
    )


def _fund(code: str, group: _Group, funds: FundDirectory) -> FundImpact:
    entry = funds.entry(code)
    today, would = group.today[code], group.would[code]
    return FundImpact(
        fund=code, name=entry.name, name_en=entry.name_en, today=today, would=would, difference=would - today
    )


# ---------------------------------------------------------------- reading history


_COUNT: Final = "SELECT count(*) FROM settlements WHERE reversal_id IS NULL AND service_date BETWEEN $1 AND $2"

# Every bill not reversed of the person-years the window touches, from 1 January of its first year.
_SETTLEMENTS: Final = """
SELECT person_key, clinic_id, record FROM settlements
WHERE reversal_id IS NULL AND service_date BETWEEN $1 AND $2
ORDER BY person_key, service_date, created_at
"""

_MEMBERSHIPS: Final = """
SELECT person_key, programme, code, effective_from, struck_off_on FROM memberships
WHERE person_key IN (SELECT person_key FROM settlements WHERE reversal_id IS NULL AND service_date BETWEEN $1 AND $2)
ORDER BY person_key
"""


class _Rows:
    """A cursor read ahead in batches of ``FETCH``, one row at a time (None after the last)."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self._batch: list[asyncpg.Record] = []
        self._next = 0
        self._done = False

    async def next(self) -> asyncpg.Record | None:
        if self._next == len(self._batch):
            if self._done:
                return None
            self._batch, self._next = await self._cursor.fetch(FETCH), 0
            self._done = len(self._batch) < FETCH
            if not self._batch:
                return None
        row = self._batch[self._next]
        self._next += 1
        return row


class _Year(NamedTuple):
    """A person's bills of one year in service-date order, and the clinic of each."""

    bills: list[HistoricBill]
    clinics: list[str]


async def _people(
    connection: asyncpg.Connection, first_day: dt.date, end: dt.date
) -> AsyncIterator[tuple[list[Membership], list[_Year]]]:
    """Each person's memberships and bills from ``first_day`` to ``end``, person by person in person-key
    order, a year at a time. The settlements are read ``FETCH`` rows a round trip and walked with a plain
    loop: an ``async for`` over the cursor costs a coroutine a row."""
    memberships = _Rows(await connection.cursor(_MEMBERSHIPS, first_day, end))
    pending = await memberships.next()
    settlements = await connection.cursor(_SETTLEMENTS, first_day, end)
    person: bytes | None = None
    years: list[_Year] = []
    year = _Year([], [])
    while batch := await settlements.fetch(FETCH):
        for key, clinic_id, data in batch:
            if key != person:
                if person is not None:
                    held, pending = await _memberships_of(person, pending, memberships)
                    yield held, years
                person, years = key, []
            record = decode_record(data)
            settled = record.result
            if not years or year.bills[-1].settled.service_date.year != settled.service_date.year:
                year = _Year([], [])
                years.append(year)
            year.bills.append(HistoricBill(bill_of(record.items, settled), settled))
            year.clinics.append(clinic_id)
    if person is not None:
        held, pending = await _memberships_of(person, pending, memberships)
        yield held, years


async def _memberships_of(
    person: bytes, pending: asyncpg.Record | None, rows: _Rows
) -> tuple[list[Membership], asyncpg.Record | None]:
    """The memberships of ``person`` from rows in person-key order, and the first row after them."""
    held = []
    while pending is not None and pending["person_key"] < person:  # a person with no bills in range
        pending = await rows.next()
    while pending is not None and pending["person_key"] == person:
        held.append(
            Membership(
                programme=pending["programme"],
                code=pending["code"],
                effective_from=pending["effective_from"],
                struck_off_on=pending["struck_off_on"],
            )
        )
        pending = await rows.next()
    return held, pending


async def window_size(connection: asyncpg.Connection, start: dt.date, end: dt.date) -> int:
    """How many settlements a what-if of ``[start, end]`` would replay (from 1 January of its first year)."""
    return int(await connection.fetchval(_COUNT, dt.date(start.year, 1, 1), end))


async def what_if(
    connection: asyncpg.Connection,
    candidate: Chain,
    *,
    start: dt.date,
    end: dt.date,
    by: GroupBy,
    catalogue: Catalogue,
    funds: FundDirectory,
    progress: Progress | None = None,
) -> WhatIfReport:
    """Replay the settlements of ``[start, end]`` under ``candidate`` and report the difference."""
    if start > end:
        raise ValueError("the window's start is after its end")
    first_day = dt.date(start.year, 1, 1)
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        # A year of a county's settlements is sorted by person before the first row comes.
        await connection.execute("SET LOCAL statement_timeout = '30min'")
        total = await connection.fetchval(_COUNT, first_day, end)
        regions = {
            row["clinic_id"]: row["region"] for row in await connection.fetch("SELECT clinic_id, region FROM clinics")
        }
        folder = _Folder(by, regions, start, end)
        done = paused = 0

        def policy_for(_: dt.date) -> Chain:
            return candidate

        add = folder.add
        async for memberships, years in _people(connection, first_day, end):
            for year in years:
                bills = replay_person_year(year.bills, memberships, policy_for, catalogue)
                for replayed, clinic_id in zip(bills, year.clinics, strict=True):
                    add(replayed, clinic_id)
                done += len(year.bills)
            folder.end_person()
            if progress is not None:
                progress(done, total)
            if done - paused >= YIELD_EVERY:  # let a gateway's other requests run between people
                paused = done
                await asyncio.sleep(0)
    return folder.report(candidate, funds)


# ---------------------------------------------------------------- CSV


def what_if_csv(report: WhatIfReport) -> str:
    """One row per group and fund (the patient as ``out_of_pocket``), and the total's rows last: a plain
    SUM of a column over the group rows is not the total when a bill is in several groups (by fund)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["group", "fund", "fund_name", "today_fen", "would_fen", "difference_fen", "settlements", "people",
         "better_off", "worse_off", "unchanged", "median_share_today", "median_share_would"]
    )  # fmt: skip
    for group in [*report.groups, report.total]:
        for impact in [*group.funds, group.out_of_pocket]:
            writer.writerow(
                [group.group, impact.fund, impact.name, impact.today, impact.would, impact.difference,
                 group.settlements, group.people, group.better_off, group.worse_off, group.unchanged,
                 group.share_today.median or "", group.share_would.median or ""]
            )  # fmt: skip
    return out.getvalue()


def encode_json(report: WhatIfReport) -> bytes:
    return msgspec.json.encode(report)
