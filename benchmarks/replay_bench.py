"""The policy what-if over a county's year: a million settlements replayed from the database (issue 17).

    .venv/bin/python benchmarks/replay_bench.py                         # 1,000,000 settlements, ~10 minutes
    .venv/bin/python benchmarks/replay_bench.py --settlements 20000     # a quick run, ~30 s
    .venv/bin/python benchmarks/replay_bench.py --json

On a private database (a new one on ``DATABASE_URL``'s server, dropped afterwards; without it an embedded
PostgreSQL in a temporary folder, as ``benchmarks/load.py`` makes):

1. **Build** a year of history: the synthetic county (``benchmarks/county.py``, about ten bills a person,
   its clinics scaled with its people) is loaded as ``load_county`` does, the sample item catalogue
   (``--catalogue``) is imported as the demo's is (``seed_demo_catalogue``), and ``--settlements`` bills
   are drawn as ``bill_stream`` draws them (a clinic by its traffic, a person of its catchment, lines by
   ``bill_items``) on service dates spread over 2026-01-01..2026-11-30. They are decided in time order by
   the real engine (``settlement.decision.decide``, with each person's memberships, running counters and
   the catalogue in force) and written with the settle path's own row shapes (``settlement_row``: the
   compressed record, the request's fingerprint) by one COPY that PostgreSQL stores while the next rows
   are decided; then each person-year's ``accumulators`` row as the settle path would have left it, so
   ``medsettle check`` holds; then ``VACUUM ANALYZE``, as autovacuum would have done on a live system.
2. **Replay**, in a fresh process (so the build's memory does not hide the replay's): ``what_if`` of the
   default policy against itself, by level, first over a window holding about 10 % of the bills (from
   1 January), then over the whole year; then a candidate (county admissions paid at 0.80 instead of
   0.75) over the whole year. For each: settlements replayed per second of wall clock and per CPU-second
   of the process (``time.process_time``, which includes asyncpg reading the rows), how long PostgreSQL
   took to sort the history before the first person came back, and the process's peak resident memory
   (VmHWM) after it.

Targets, with the exit status 1 when one is missed: every difference of the default against itself is 0
(every fund, the patient, every group; nobody better or worse off, nothing refused); the whole year replayed
at 10,000 settlements or more per CPU-second of the process (one core: the replay is one Python thread;
the wall-clock rate is printed beside it, and is lower by PostgreSQL's sort before the first row and by
whatever else the machine runs); and the peak memory after the whole year at most 1.5 times the peak after
its first 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import math
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import msgspec  # noqa: E402

from adapters import db, identity  # noqa: E402
from adapters.catalogue_store import load_catalogue  # noqa: E402
from adapters.demo import seed_demo_catalogue  # noqa: E402
from adapters.fund_names import FundDirectory  # noqa: E402
from adapters.policy_files import load_policy_book, policy_dir  # noqa: E402
from adapters.settlement_sql import SettlementRow, accumulator_write, json_text, settlement_row  # noqa: E402
from adapters.store import Store  # noqa: E402
from adapters.what_if import WhatIfReport, what_if  # noqa: E402
from benchmarks.county import CHINA, INPATIENT_SHARE, County, bill_items, build_county, load_county, request_id  # noqa: E402
from benchmarks.load import private_database  # noqa: E402
from gateway import api_models as api  # noqa: E402
from gateway.service import request_hash  # noqa: E402
from settlement.catalogue import Catalogue  # noqa: E402
from settlement.chain import Chain, policy_document  # noqa: E402
from settlement.chain_policy import parse_chain  # noqa: E402
from settlement.decision import decide  # noqa: E402
from settlement.errors import SettlementError  # noqa: E402
from settlement.models import Bill, LineItem  # noqa: E402
from settlement.policy_book import PolicyBook  # noqa: E402
from settlement.ports import NewSettlement, SettleKey  # noqa: E402
from settlement.registry import Membership  # noqa: E402

PEPPER = b"replay-benchmark-pepper"
KEY_ENCRYPTION_KEY = bytes(range(64, 96))
SAMPLE_CATALOGUE = ROOT / "samples" / "catalogue-2026.csv"
DEFAULT_POLICY = ROOT / "policies" / "default.toml"

FIRST_DAY = dt.date(2026, 1, 1)
LAST_DAY = dt.date(2026, 11, 30)  # bills are spread over these days; the what-if window is the whole year
YEAR_END = dt.date(2026, 12, 31)
DAYS = (LAST_DAY - FIRST_DAY).days + 1
OPENING = dt.time(8, 0, tzinfo=CHINA)
CLINIC_DAY = dt.timedelta(hours=10)  # a day's settlements are spread over 08:00-18:00 in China
BILLS_PER_PERSON = 10  # a rural resident's visits in a year, roughly: sets the county's size
PEOPLE_PER_COUNTY = 20_000  # benchmarks/county.py's default county; more people get more clinics
WINDOW_SHARE = 0.10  # the first replay's window holds this share of the bills

TARGET_PER_SECOND = 10_000
MEMORY_RATIO_LIMIT = 1.5
MB = 1024 * 1024

# The candidate: county admissions paid at 0.80 instead of 0.75 (policies/default.toml's inpatient rule).
DEFAULT_RATE = "rate = { township = 0.85, county = 0.75 }"
CANDIDATE_RATE = "rate = { township = 0.85, county = 0.80 }"


def log(message: str) -> None:
    print(f"[replay-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- policies


def default_policy() -> Chain:
    return parse_chain(DEFAULT_POLICY.read_text(encoding="utf-8"), DEFAULT_POLICY.name)


def candidate_policy() -> Chain:
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    if DEFAULT_RATE not in text:
        raise SystemExit(f"{DEFAULT_POLICY.name} no longer has {DEFAULT_RATE!r}: update the candidate")
    return parse_chain(
        text.replace('id = "default-2026"', 'id = "candidate-county-080"').replace(DEFAULT_RATE, CANDIDATE_RATE),
        "candidate-county-080.toml",
    )


# ---------------------------------------------------------------- building the history


def county_for(settlements: int, seed: int, people: int | None = None) -> County:
    """The synthetic county with about ``BILLS_PER_PERSON`` bills a person, and clinics for its people."""
    people = people or max(50, settlements // BILLS_PER_PERSON)
    scale = math.ceil(people / PEOPLE_PER_COUNTY)
    return build_county(seed, villages=100 * scale, townships=13 * scale, counties=3 * scale, people=people)


class Plan:
    """The year's bills before they are settled, as sortable ints: the service day, then the person, then
    the clinic and whether it is an admission. An int a bill rather than a tuple of objects, so a million
    bills take about 40 MB; sorted, they are in the order the bills were settled.

    Clinics are drawn by their traffic, each with a person of its catchment and a visit type by its level's
    inpatient share, as ``benchmarks.county.bill_stream`` draws them; the service day uniformly."""

    def __init__(self, county: County, count: int, rng: random.Random) -> None:
        self.people = len(county.people)
        self.clinics, cumulative = county.traffic
        catchments = [county.catchment(clinic) for clinic in self.clinics]
        numbers = range(len(self.clinics))
        keys = []
        for _ in range(count):
            clinic = rng.choices(numbers, cum_weights=cumulative)[0]
            inpatient = rng.random() < INPATIENT_SHARE[self.clinics[clinic].level]
            person = rng.choice(catchments[clinic])
            keys.append(self._key(rng.randrange(DAYS), person, clinic, inpatient))
        keys.sort()
        self.keys = keys

    def _key(self, day: int, person: int, clinic: int, inpatient: bool) -> int:
        return ((day * self.people + person) * len(self.clinics) + clinic) * 2 + inpatient

    def unpack(self, key: int) -> tuple[int, int, int, bool]:
        """(day from 1 January, person index, clinic index, admission) of a key."""
        key, inpatient = divmod(key, 2)
        key, clinic = divmod(key, len(self.clinics))
        day, person = divmod(key, self.people)
        return day, person, clinic, bool(inpatient)

    def bills_per_day(self) -> Counter[int]:
        return Counter(self.unpack(key)[0] for key in self.keys)


class PersonYear:
    """What the settle path keeps of one person's year in ``accumulators``, as the year is settled."""

    __slots__ = ("caps", "counters", "settlements", "updated")

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.caps: dict[str, int] = {}
        self.settlements = 0
        self.updated: tuple[str, dt.datetime] | None = None  # counters as written (JSON) and when


@dataclass
class BuildFigures:
    people: int = 0
    clinics: int = 0
    settlements: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    person_years: int = 0
    catalogue_items: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    database_mb: float = 0.0


class History:
    """Settles the planned bills in the order they were settled, yielding their ``SettlementRow`` tuples."""

    def __init__(self, county: County, book: PolicyBook, catalogue: Catalogue, seed: int) -> None:
        self.county = county
        self.book = book
        self.catalogue = catalogue
        self.rng = random.Random(seed * 7919 + 17)
        self.keys = [identity.person_key(person.national_id, PEPPER) for person in county.people]
        self.masked = [identity.mask(person.national_id) for person in county.people]
        self.memberships = [
            tuple(
                Membership(
                    programme=item.programme,
                    code=item.code,
                    effective_from=item.effective_from,
                    struck_off_on=item.struck_off_on,
                )
                for item in person.memberships
            )
            for person in county.people
        ]
        self.years: dict[int, PersonYear] = {}
        self.figures = BuildFigures(people=len(county.people), clinics=len(county.clinics))

    def rows(self, plan: Plan) -> Iterator[tuple[Any, ...]]:
        """Every planned bill the engine accepts, as a row of ``settlements``; a day's bills are spread over
        its clinic hours, so ``created_at`` follows the order they were decided in."""
        per_day = plan.bills_per_day()
        today, seen_today = -1, 0
        for key in plan.keys:
            day, person, clinic, inpatient = plan.unpack(key)
            if day != today:
                today, seen_today = day, 0
            service_date = FIRST_DAY + dt.timedelta(days=day)
            created_at = dt.datetime.combine(service_date, OPENING) + CLINIC_DAY * seen_today / per_day[day]
            seen_today += 1
            row = self.settle(person, plan.clinics[clinic].clinic_id, inpatient, service_date, created_at)
            if row is not None:
                yield msgspec.structs.astuple(row)

    def settle(
        self, person: int, clinic_id: str, inpatient: bool, service_date: dt.date, created_at: dt.datetime
    ) -> SettlementRow | None:
        """One bill decided and shaped as the settle path does it (gateway/service.py), or None when the
        engine refuses it."""
        clinic = self.county.clinic_by_id[clinic_id]
        terminal_id = self.county.terminal_by_clinic[clinic_id].terminal_id
        visit_type = "inpatient" if inpatient else "outpatient"
        lines = bill_items(self.rng, clinic.level, visit_type)
        request = msgspec.convert(
            {
                "request_id": request_id(self.rng, terminal_id),
                "clinic_id": clinic_id,
                "person_id": self.county.people[person].national_id,
                "visit_type": visit_type,
                "service_date": service_date.isoformat(),
                "items": lines,
            },
            api.SettleRequest,
        )
        bill = Bill(
            clinic_level=clinic.level,  # type: ignore[arg-type]
            visit_type=request.visit_type,
            service_date=service_date,
            items=tuple(LineItem(**line) for line in lines),
        )
        year = self.years.setdefault(person, PersonYear())
        try:
            policy = self.book.in_force(service_date)
            decision = decide(bill, policy, self.memberships[person], year.counters, self.catalogue.on(service_date))
        except SettlementError as refused:
            self.figures.refused[refused.code] += 1
            return None
        new = NewSettlement(
            key=SettleKey(
                person_key=self.keys[person],
                year=service_date.year,
                terminal_id=terminal_id,
                request_id=request.request_id,
            ),
            settlement_id=uuid.UUID(int=self.rng.getrandbits(128), version=4),
            clinic_id=clinic_id,
            person=self.masked[person],
            items=bill.items,
            decision=decision,
            request_hash=request_hash(PEPPER, "settle", request),
            booked_on=service_date,
            created_at=created_at,
            version=year.settlements or None,
        )
        year.counters = decision.settlement.counters_after
        for name, cap in decision.caps.items():  # a row keeps the highest cap it was decided under
            year.caps[name] = max(cap, year.caps.get(name, cap))
        year.settlements += 1
        year.updated = (accumulator_write(new).counters, created_at)
        self.figures.settlements += 1
        return settlement_row(new)

    def accumulator_rows(self) -> Iterator[tuple[Any, ...]]:
        """Each person-year's ``accumulators`` row as its settlements left it: the counters after the last,
        the highest caps, and a version a settlement (the first created the row at version 1)."""
        for person, year in sorted(self.years.items()):
            if year.updated is not None:
                counters, updated_at = year.updated
                yield self.keys[person], FIRST_DAY.year, counters, json_text(year.caps), year.settlements, updated_at


SETTLEMENT_COLUMNS = [column.name for column in msgspec.structs.fields(SettlementRow)]
ACCUMULATOR_COLUMNS = ["person_key", "year", "counters", "caps", "version", "updated_at"]


async def build_history(
    url: str, settlements: int, seed: int, *, catalogue: Path | None, people: int | None = None
) -> BuildFigures:
    """Migrate, load the county (and the catalogue), and write a year of ``settlements`` settled bills."""
    started = time.perf_counter()
    county = county_for(settlements, seed, people)
    book = load_policy_book(policy_dir())
    connection = await asyncpg.connect(url)
    try:
        await db.migrate(connection)
        await load_county(connection, county, pepper=PEPPER, key_encryption_key=KEY_ENCRYPTION_KEY)
        items = 0 if catalogue is None else await seed_demo_catalogue(connection, catalogue)
        await _store_policies(url, book)
        history = History(county, book, await load_catalogue(connection), seed)
        plan = Plan(county, settlements, random.Random(seed))
        figures = history.figures
        figures.catalogue_items = items
        figures.seconds["county, catalogue and plan"] = time.perf_counter() - started
        log(f"{len(county.people):,} people and {len(county.clinics):,} clinics loaded; settling {settlements:,} bills")

        started = time.perf_counter()
        async with connection.transaction():
            # One COPY for the year: PostgreSQL stores each buffer of rows while the next ones are decided.
            await connection.copy_records_to_table(
                "settlements", records=history.rows(plan), columns=SETTLEMENT_COLUMNS
            )
            await connection.copy_records_to_table(
                "accumulators", records=history.accumulator_rows(), columns=ACCUMULATOR_COLUMNS
            )
        figures.person_years = sum(1 for year in history.years.values() if year.settlements)
        figures.seconds["decide and COPY"] = time.perf_counter() - started
        log(f"{figures.settlements:,} settlements written; VACUUM ANALYZE")

        started = time.perf_counter()
        await connection.execute("VACUUM ANALYZE settlements")
        await connection.execute("VACUUM ANALYZE accumulators")
        figures.seconds["VACUUM ANALYZE"] = time.perf_counter() - started
        figures.database_mb = await connection.fetchval("SELECT pg_database_size(current_database())") / MB
    finally:
        await connection.close()
    return figures


async def _store_policies(url: str, book: PolicyBook) -> None:
    """Record the policy versions as a gateway does at start: settlements name the version they used."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        await Store(pool).sync_policies([(policy, "policies", policy_document(policy)) for policy in book])
    finally:
        await pool.close()


# ---------------------------------------------------------------- replaying


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (VmHWM)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
    return 0.0


def differences(report: WhatIfReport) -> list[str]:
    """Every figure of the report by which the candidate differs from today: none for a policy against itself."""
    found = []
    for group in [*report.groups, report.total]:
        for impact in [*group.funds, group.out_of_pocket]:
            if impact.difference:
                found.append(f"{group.group}: {impact.fund} {impact.difference:+,} fen")
        if group.better_off or group.worse_off:
            found.append(f"{group.group}: {group.better_off} better off, {group.worse_off} worse off")
        if group.share_today != group.share_would:
            found.append(f"{group.group}: the out-of-pocket shares differ")
    found.extend(f"refused: {code} x {count}" for code, count in report.refused.items())
    return found


async def timed_what_if(
    connection: asyncpg.Connection,
    candidate: Chain,
    end: dt.date,
    *,
    catalogue: Catalogue,
    funds: FundDirectory,
) -> dict[str, Any]:
    """One ``what_if`` from 1 January to ``end`` by level, timed by wall clock and by this process's CPU."""
    gc.collect()
    first_person: list[float] = []
    logged = [0]
    started, started_cpu = time.perf_counter(), time.process_time()

    def progress(done: int, total: int) -> None:
        if not first_person:
            first_person.append(time.perf_counter() - started)
        tenth = done * 10 // max(total, 1)
        if tenth > logged[0]:
            logged[0] = tenth
            log(f"  {candidate.id} to {end}: {done:,} of {total:,} replayed")

    report = await what_if(
        connection, candidate, start=FIRST_DAY, end=end, by="level", catalogue=catalogue, funds=funds, progress=progress
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    return {
        "policy": candidate.id,
        "from": FIRST_DAY.isoformat(),
        "to": end.isoformat(),
        "settlements": report.settlements,
        "replayed": report.replayed,
        "wall_s": wall,
        "cpu_s": cpu,
        "first_person_s": first_person[0] if first_person else None,
        "per_second": report.replayed / wall if wall else 0.0,
        "per_cpu_second": report.replayed / cpu if cpu else 0.0,
        "peak_rss_mb": peak_rss_mb(),
        "differences": differences(report),
        "report": msgspec.to_builtins(report),
    }


async def replay_runs(url: str) -> dict[str, Any]:
    """The three what-ifs, in this order: the default against itself over the first ~10 % of the bills, then
    over the whole year, then the candidate over the whole year."""
    connection = await asyncpg.connect(url)
    try:
        catalogue = await load_catalogue(connection)
        default, candidate = default_policy(), candidate_policy()
        funds = FundDirectory([*load_policy_book(policy_dir()), candidate])
        window_end = await connection.fetchval(
            "SELECT percentile_disc($1::float8) WITHIN GROUP (ORDER BY service_date) FROM settlements"
            " WHERE reversal_id IS NULL",
            WINDOW_SHARE,
        )
        ready_mb = peak_rss_mb()
        window = await timed_what_if(connection, default, window_end, catalogue=catalogue, funds=funds)
        year = await timed_what_if(connection, default, YEAR_END, catalogue=catalogue, funds=funds)
        changed = await timed_what_if(connection, candidate, YEAR_END, catalogue=catalogue, funds=funds)
    finally:
        await connection.close()
    return {"peak_rss_before_mb": ready_mb, "window": window, "year": year, "candidate": changed}


def replay_in_fresh_process(url: str) -> dict[str, Any]:
    """``replay_runs`` in a process of its own: this one has built the year, and its peak memory would hide
    the replay's."""
    completed = subprocess.run(
        [sys.executable, __file__, "--replay", url], stdout=subprocess.PIPE, text=True, check=True, timeout=6 * 3600
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


# ---------------------------------------------------------------- the report


def verdicts(replay: dict[str, Any]) -> list[tuple[str, str, bool]]:
    year, window = replay["year"], replay["window"]
    ratio = year["peak_rss_mb"] / window["peak_rss_mb"]
    found = year["differences"] + window["differences"]
    return [
        (
            f"{year['policy']} against itself",
            f"{len(found)} differences" + (f" (first: {found[0]})" if found else ""),
            not found,
        ),
        (
            "whole year replayed per CPU-second (one core)",
            f"{year['per_cpu_second']:,.0f} vs target >= {TARGET_PER_SECOND:,} "
            f"(wall clock {year['per_second']:,.0f} a second)",
            year["per_cpu_second"] >= TARGET_PER_SECOND,
        ),
        (
            "peak memory, whole year / first 10 %",
            f"{year['peak_rss_mb']:.1f} / {window['peak_rss_mb']:.1f} MB = {ratio:.2f} vs limit {MEMORY_RATIO_LIMIT}",
            ratio <= MEMORY_RATIO_LIMIT,
        ),
    ]


def yuan(fen: int) -> str:
    """Fen as yuan with thousands separators: -123456789 -> '-1,234,567.89'."""
    whole, part = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}{whole:,}.{part:02d}"


def print_report(result: dict[str, Any]) -> None:
    build, replay = result["build"], result["replay"]
    print(
        f"policy what-if over {build['settlements']:,} settlements of {build['people']:,} people and "
        f"{build['clinics']:,} clinics (seed {result['seed']}), {result['database']}, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {result['load_average']['start']} at the "
        f"start, {result['load_average']['end']} at the end\n"
    )
    steps = "; ".join(f"{name} {seconds:.1f} s" for name, seconds in build["seconds"].items())
    rate = build["settlements"] / build["seconds"]["decide and COPY"]
    refused = ", ".join(f"{code} {count}" for code, count in build["refused"].items()) or "none"
    print(f"build: {steps} ({rate:,.0f} settlements a second decided and stored)")
    print(
        f"       {build['person_years']:,} person-years, {build['catalogue_items']} catalogue items, database "
        f"{build['database_mb']:,.0f} MB; bills the engine refused: {refused}\n"
    )
    print(
        f"{'what-if by level, from 01-01':<44} {'replayed':>10} {'wall s':>7} {'CPU s':>7} {'1st row s':>9} "
        f"{'per second':>10} {'per CPU-s':>10} {'peak RSS MB':>11}"
    )
    for key, label in (("window", "first 10 %"), ("year", "whole year"), ("candidate", "whole year")):
        run = replay[key]
        name = f"{run['policy']}, {label} (to {run['to'][5:]})"
        print(
            f"{name:<44} {run['replayed']:>10,} {run['wall_s']:7.1f} {run['cpu_s']:7.1f} "
            f"{_seconds(run['first_person_s']):>9} {run['per_second']:10,.0f} {run['per_cpu_second']:10,.0f} "
            f"{run['peak_rss_mb']:11.1f}"
        )
    print(f"(peak RSS before the first what-if: {replay['peak_rss_before_mb']:.1f} MB)\n")
    print_figures(f"{replay['year']['policy']} against itself, whole year", replay["year"]["report"])
    print_figures(
        f"{replay['candidate']['policy']} (county admissions at 0.80 instead of 0.75), whole year",
        replay["candidate"]["report"],
    )
    for name, figure, passed in verdicts(replay):
        print(f"{name}: {figure}: {'PASS' if passed else 'FAIL'}")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_figures(title: str, report: dict[str, Any]) -> None:
    """Each group's people (better off, worse off), then its funds and the patient: paid today, would pay,
    the difference, in yuan."""
    print(f"{title}: {report['settlements']:,} settlements; refused: {report['refused'] or 'none'}")
    print(f"{'group':<9} {'fund':<16} {'today yuan':>17} {'would yuan':>17} {'difference':>15}")
    for group in [*report["groups"], report["total"]]:
        print(
            f"{group['group']:<9} {group['settlements']:,} settlements, {group['people']:,} people: "
            f"{group['better_off']:,} better off, {group['worse_off']:,} worse off, {group['unchanged']:,} unchanged"
        )
        for impact in [*group["funds"], group["out_of_pocket"]]:
            print(
                f"{'':<9} {impact['fund']:<16} {yuan(impact['today']):>17} {yuan(impact['would']):>17} "
                f"{yuan(impact['difference']):>15}"
            )
    print()


# ---------------------------------------------------------------- main


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_at_start = load_average()
    with private_database() as url:
        log(f"building {args.settlements:,} settlements (seed {args.seed})")
        build = asyncio.run(build_history(url, args.settlements, args.seed, catalogue=args.catalogue))
        log("replaying in a fresh process")
        replay = replay_in_fresh_process(url)
    figures = msgspec.to_builtins(build)
    return {
        "seed": args.seed,
        "database": "DATABASE_URL's server" if os.environ.get("DATABASE_URL") else "embedded PostgreSQL",
        "load_average": {"start": load_at_start, "end": load_average()},
        "build": figures,
        "replay": replay,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settlements", type=int, default=1_000_000, help="settlements in the year (1,000,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--catalogue",
        type=lambda text: None if text == "none" else Path(text),
        default=SAMPLE_CATALOGUE,
        help="the item catalogue to settle by (default samples/catalogue-2026.csv; 'none': terminals' categories)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the report")
    parser.add_argument("--replay", metavar="URL", help=argparse.SUPPRESS)  # the child of replay_in_fresh_process
    args = parser.parse_args(argv)
    if args.replay:
        print(json.dumps(asyncio.run(replay_runs(args.replay))))
        return 0
    if args.settlements < 1:
        parser.error("--settlements must be at least 1")
    result = run(args)
    passed = all(verdict for _, _, verdict in verdicts(result["replay"]))
    if args.json:
        result["targets"] = [{"name": n, "figure": f, "passed": p} for n, f, p in verdicts(result["replay"])]
        print(json.dumps(result, indent=1))
    else:
        print_report(result)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
