"""Beside the insurer's core under load: the gateway's p99 against the insurer simulator's own, in one run.

    .venv/bin/python benchmarks/insurer_bench.py                       # 64 terminals, 20 ms, 3 rounds of 10 s a side
    .venv/bin/python benchmarks/insurer_bench.py --seconds 60 --rounds 6 --json > benchmarks/out/insurer.json
    .venv/bin/python benchmarks/insurer_bench.py --rate 100            # 100 bills a second offered, in all

The target (issue 18): with the simulator adding 20 ms, the gateway's p99 at 64 terminals is at most the
simulator's p99 + 15 ms. Both figures come from the same run, on the same machine, with the same bills and
the same concurrency, so what the gateway adds is what is left between them:

1. a private PostgreSQL database (a new one on ``DATABASE_URL``'s server, dropped afterwards; else an
   embedded server in a temporary folder), migrated, with the synthetic county (``benchmarks/county.py``);
2. ``medsettle insurer-sim --delay-ms 20`` and ``medsettle serve`` as processes on free ports of 127.0.0.1,
   both on ``policies/examples/beside-the-insurer`` (the insurer pays insurance and critical illness);
3. rounds, each with two sides one after the other: the **simulator called directly** by ``--terminals``
   clients (``InsurerClient``, the gateway's own client, settling the same kind of bills under an
   institution code of their own), then the **gateway end to end** from as many signed terminals
   (``TerminalClient``), each bill for an insured person, so every one goes to the insurer; a warm-up
   before each side is not counted. Every terminal sends one bill at a time: back to back (a closed loop,
   the default), or with ``--rate R`` one every ``terminals / R`` seconds, so both sides are offered the
   same load (a terminal still waiting for its answer sends its next bill once the answer comes);
4. the checks: every message the gateway sent is finished, the insurer holds in force exactly the
   settlements the gateway booked, and ``adapters.check.check_invariants`` finds nothing.

It prints each side's latency per round and over all rounds, the CPU each process spent per request, the
difference of the two p99s and the verdict. Exit status: 0 when the target is met and the checks pass, 1
when not, 2 when a measurement failed. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import random
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402

from adapters import db, insurer_messages  # noqa: E402
from adapters.check import check_invariants  # noqa: E402
from adapters.insurer import protocol  # noqa: E402
from adapters.insurer.client import InsurerConfig, InsurerError, open_client  # noqa: E402
from adapters.insurer.protocol import settle_input  # noqa: E402
from adapters.terminal_client import TerminalClient  # noqa: E402
from benchmarks import county as synthetic  # noqa: E402
from benchmarks.ceilings import CpuMeter, analyze  # noqa: E402
from benchmarks.load import (  # noqa: E402
    free_port,
    gateway_environment,
    private_database,
    stop,
    tail,
    wait_ready,
)
from settlement.models import Bill, LineItem  # noqa: E402

try:
    import psutil
except ImportError:  # pragma: no cover - comes with the embedded extra; only the CPU breakdown needs it
    psutil = None

BIN = Path(sys.executable).parent
POLICY_DIR = ROOT / "policies" / "examples" / "beside-the-insurer"
OUT = ROOT / "benchmarks" / "out"
SIDES = ("simulator", "gateway")
SIDE_NAMES = {"simulator": "simulator, called directly", "gateway": "gateway, end to end"}
# The direct clients' institution: their message ids (which start with it) never meet the gateway's.
BENCH_INSTITUTION = "BENCH0000001"
STOP_TIMEOUT = 40.0
SETTLE_TIMEOUT = 60.0  # seconds for the gateway's open messages to finish after the last round
# Every side of a round stops at whichever comes first: its seconds, or this many requests.
MAX_REQUESTS_PER_SIDE = 200_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- bills


@dataclass
class Bills:
    """Bills of the synthetic county for insured people only, so every one the gateway settles goes to the
    insurer: per terminal, for its clinic and its catchment."""

    county: synthetic.County
    rng: random.Random
    _insured: dict[str, list[int]] = field(default_factory=dict)

    def _people(self, clinic_id: str) -> list[int]:
        found = self._insured.get(clinic_id)
        if found is None:
            insured = [index for index, person in enumerate(self.county.people) if _insured(person)]
            catchment = set(self.county.catchment(self.county.clinic_by_id[clinic_id]))
            # A small county may leave a clinic no insured person of its own: then anyone insured comes.
            found = self._insured[clinic_id] = [index for index in insured if index in catchment] or insured
        return found

    def body(self, terminal_id: str) -> dict[str, Any]:
        """A settle request for the terminal's clinic (the gateway's side)."""
        clinic = self.county.clinic_by_terminal[terminal_id]
        person = self.county.people[self.rng.choice(self._people(clinic.clinic_id))]
        visit_type = synthetic.visit_type_at(self.rng, clinic)  # the county's mix: admissions at townships and counties
        return {
            "request_id": synthetic.request_id(self.rng, terminal_id),
            "clinic_id": clinic.clinic_id,
            "person_id": person.national_id,
            "visit_type": visit_type,
            "service_date": synthetic.china_today().isoformat(),
            "items": synthetic.bill_items(self.rng, clinic.level, visit_type),
        }

    def insurer_payload(self, terminal_id: str, visit_id: str) -> Any:
        """The same kind of bill as the insurer receives it (the simulator's side): a person number derived
        from the national ID, as the gateway's pseudonym is, never the ID itself."""
        body = self.body(terminal_id)
        clinic = self.county.clinic_by_id[body["clinic_id"]]
        bill = Bill(
            clinic_level=clinic.level,  # type: ignore[arg-type]
            visit_type=body["visit_type"],
            service_date=dt.date.fromisoformat(body["service_date"]),
            items=tuple(
                LineItem(
                    code=line["code"],
                    name=line["name"],
                    category=line["category"],
                    amount=line["amount"],
                    quantity=line["quantity"],
                    unit_price=line["unit_price"],
                )
                for line in body["items"]
            ),
        )
        person_number = hashlib.sha256(b"bench:" + body["person_id"].encode()).hexdigest()[:30]
        return settle_input(bill, psn_no=person_number, mdtrt_id=visit_id, insured=True)


def _insured(person: synthetic.Person) -> bool:
    """Insured all year: every bill of theirs goes to the insurer."""
    return any(m.programme == "insurance" and m.struck_off_on is None for m in person.memberships)


def terminals_for(county: synthetic.County, count: int, seed: int) -> list[str]:
    """``count`` terminals of township centres and county hospitals first (they see most bills), distinct
    while there are enough."""
    rng = random.Random(seed)
    order = sorted(county.terminals, key=lambda t: (county.clinic_by_id[t.clinic_id].level == "village", rng.random()))
    return [order[index % len(order)].terminal_id for index in range(count)]


# ---------------------------------------------------------------- one side of a round


@dataclass
class Side:
    """What one side of one round measured."""

    side: str
    round: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + sum(self.errors.values())


def percentile(values: list[float], share: float) -> float:
    """Nearest rank: the smallest value with at least ``share`` of the values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def drive(
    workers: int, seconds: float, warmup: float, rate: float, one: Callable[[int], Any], side: Side
) -> None:
    """``workers`` terminals calling ``one(worker)`` for ``warmup`` + ``seconds``, each one call at a time:
    back to back (``rate`` 0), or each every ``workers / rate`` seconds from a random start. Latencies of
    calls started after the warm-up are kept, up to the bound."""
    started = time.perf_counter()
    counting_from = started + warmup
    deadline = counting_from + seconds
    interval = workers / rate if rate else 0.0

    async def loop(worker: int) -> None:
        due = started + random.uniform(0, interval)
        while time.perf_counter() < deadline and side.requests < MAX_REQUESTS_PER_SIDE:
            if interval:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                due += interval
            began = time.perf_counter()
            if began >= deadline:
                break
            try:
                error = await one(worker)
            except Exception as failure:  # a transport failure is an error of this side, not of the run
                error = type(failure).__name__
            if began >= counting_from:
                if error is None:
                    side.latencies_ms.append((time.perf_counter() - began) * 1000)
                else:
                    side.errors[error] += 1

    await asyncio.gather(*(loop(worker) for worker in range(workers)))
    side.seconds = min(time.perf_counter(), deadline) - counting_from


async def simulator_side(run: Run, side: Side) -> None:
    """The simulator called directly, as the gateway calls it, by ``--terminals`` clients at once."""
    config = InsurerConfig(
        base_url=run.simulator_url,
        institution_code=BENCH_INSTITUTION,
        institution_name="insurer benchmark",
        area_code="330424",
        total_timeout=10.0,
    )
    ids = protocol.MessageIds(BENCH_INSTITUTION, first=0, last=8999)  # 9000-9999: the client's sign-ins
    async with open_client(config, connections=run.args.terminals) as client:
        await client.sign_in()

        async def one(worker: int) -> str | None:
            run.visits += 1
            payload = run.bills.insurer_payload(run.terminals[worker], f"bench-{run.visits}")
            try:
                await client.settle(ids.next(dt.datetime.now(dt.UTC)), payload)
            except InsurerError as error:
                return type(error).__name__
            return None

        await drive(run.args.terminals, run.args.side_seconds, run.args.warmup, run.args.rate, one, side)


async def gateway_side(run: Run, side: Side, *, priming: float = 0.0) -> None:
    """The gateway end to end, from ``--terminals`` signed terminals at once, no retries (``priming``: that many
    seconds of it, none counted)."""
    connector = aiohttp.TCPConnector(limit=run.args.terminals)
    async with aiohttp.ClientSession(connector=connector) as session:
        clients = [
            TerminalClient(run.gateway_url, *run.keys[terminal_id], session=session, timeout=15.0)
            for terminal_id in run.terminals
        ]

        async def one(worker: int) -> str | None:
            reply = await clients[worker].request(
                "POST", "/v1/settlements", run.bills.body(run.terminals[worker]), retry=False
            )
            if reply.status == 201:
                return None
            code = reply.body.get("code") if isinstance(reply.body, dict) else None
            return f"HTTP {reply.status} {code or ''}".strip()

        if priming:
            await drive(run.args.terminals, 0.0, priming, run.args.rate, one, side)
        else:
            await drive(run.args.terminals, run.args.side_seconds, run.args.warmup, run.args.rate, one, side)


# ---------------------------------------------------------------- the run


@dataclass
class Run:
    args: argparse.Namespace
    bills: Bills
    terminals: list[str]
    keys: dict[str, tuple[str, str]]
    database_url: str
    simulator_url: str
    control_url: str
    gateway_url: str
    meter: CpuMeter
    visits: int = 0
    sides: list[Side] = field(default_factory=list)


def prime(run: Run) -> None:
    """Settle through the gateway for one warm-up, uncounted, then analyse the tables it filled.

    The database starts with no settlements and no insurer messages, and a run ends within autovacuum's first
    minute: without statistics the gateway's connections keep the plans they made on empty tables, which read
    those tables whole at every write, so each round would cost more than the one before (benchmarks/RESULTS.md,
    2026-12-03, PostgreSQL's CPU per settlement). A live database has its statistics."""
    asyncio.run(gateway_side(run, Side("prime", 0), priming=max(run.args.warmup, 2.0)))
    asyncio.run(analyze(run.database_url))


def measure(run: Run, side: Side, body: Callable[[Run, Side], Any]) -> None:
    """One side, with the CPU every watched process and this one (the load generator) spent on it."""
    run.meter.start()
    own = resource.getrusage(resource.RUSAGE_SELF)
    asyncio.run(body(run, side))
    after = resource.getrusage(resource.RUSAGE_SELF)
    side.cpu_seconds = run.meter.stop("children")
    side.cpu_seconds.pop("children", None)
    side.cpu_seconds["load generator"] = after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime
    run.sides.append(side)
    figures = summary(side.latencies_ms, side.errors, side.seconds)
    log(
        f"round {side.round} {SIDE_NAMES[side.side]}: {figures['requests']:,} requests, "
        f"{figures['per_second']:,.0f}/s, p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms,"
        f" errors {figures['errors']}"
    )


def summary(latencies: list[float], errors: Counter[str], seconds: float) -> dict[str, Any]:
    count = len(latencies) + sum(errors.values())
    return {
        "requests": count,
        "per_second": count / seconds if seconds > 0 else 0.0,
        "p50_ms": percentile(latencies, 0.50),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=math.nan),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(5)),
    }


async def _prepare(
    database_url: str, county: synthetic.County, pepper: bytes, kek: bytes
) -> dict[str, tuple[str, str]]:
    connection = await asyncpg.connect(database_url)
    try:
        await db.migrate(connection)
        return await synthetic.load_county(connection, county, pepper=pepper, key_encryption_key=kek)
    finally:
        await connection.close()


async def _postmaster_pid(database_url: str) -> int | None:
    """PostgreSQL's main process when it runs on this machine (for the CPU breakdown), else None."""
    if psutil is None:
        return None
    connection = await asyncpg.connect(database_url)
    try:  # while the backend lives: it is gone once the connection closes
        backend = int(await connection.fetchval("SELECT pg_backend_pid()"))
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(backend).parent()
            if parent is not None and "postgres" in parent.name():
                return int(parent.pid)
    finally:
        await connection.close()
    return None


@contextlib.contextmanager
def started(args: argparse.Namespace, county: synthetic.County) -> Iterator[Run]:
    """Database, county, simulator and gateway for one run; everything started here is stopped after."""
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    pepper = secrets.token_hex(16)
    kek = secrets.token_bytes(32)
    medsettle = [str(BIN / "medsettle")] if (BIN / "medsettle").exists() else [sys.executable, "-m", "gateway.cli"]
    simulator: subprocess.Popen[bytes] | None = None
    gateway: subprocess.Popen[bytes] | None = None
    data_dir = Path(tempfile.mkdtemp(prefix="medsettle-insurer-bench-"))
    with private_database() as database_url:
        try:
            keys = asyncio.run(_prepare(database_url, county, pepper.encode(), kek))
            sim_port, control_port, gateway_port = free_port(), free_port(), free_port()
            simulator_log = out / "insurer-simulator.log"
            environment = {key: value for key, value in os.environ.items() if not key.startswith("MEDSETTLE_")}
            with simulator_log.open("wb") as sink:
                simulator = subprocess.Popen(
                    [
                        *medsettle,
                        "insurer-sim",
                        *("--port", str(sim_port), "--control-port", str(control_port)),
                        *("--policy-dir", str(args.policy_dir), "--delay-ms", str(args.delay_ms)),
                    ],
                    env={**environment, "MEDSETTLE_LOG_LEVEL": "warning"},
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    start_new_session=True,
                )
            simulator_url = f"http://127.0.0.1:{sim_port}"
            control_url = f"http://127.0.0.1:{control_port}"
            wait_ready(control_url, simulator, simulator_log, path="/sim/faults", name="the simulator")
            gateway_log = out / "insurer-gateway.log"
            serve_environment = {
                **gateway_environment(
                    environment, database_url=database_url, port=gateway_port, pepper=pepper, kek=kek, data_dir=data_dir
                ),
                "MEDSETTLE_POLICY_DIR": str(args.policy_dir),
                "MEDSETTLE_INSURER_URL": simulator_url,
            }
            if args.pool_max is not None:
                serve_environment["MEDSETTLE_POOL_MAX"] = str(args.pool_max)
            with gateway_log.open("wb") as sink:
                gateway = subprocess.Popen(
                    [*medsettle, "serve"],
                    env=serve_environment,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    start_new_session=True,
                )
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            wait_ready(gateway_url, gateway, gateway_log)
            log(f"simulator: {simulator_url} (pid {simulator.pid}); gateway: {gateway_url} (pid {gateway.pid})")
            meter = CpuMeter()
            meter.watch("gateway", gateway.pid)
            meter.watch("simulator", simulator.pid)
            meter.watch("postgres", asyncio.run(_postmaster_pid(database_url)))
            terminals = terminals_for(county, args.terminals, args.seed)
            yield Run(
                args=args,
                bills=Bills(county, random.Random(args.seed)),
                terminals=terminals,
                keys=keys,
                database_url=database_url,
                simulator_url=simulator_url,
                control_url=control_url,
                gateway_url=gateway_url,
                meter=meter,
            )
        finally:
            for process, name, path in ((gateway, "the gateway", "insurer-gateway.log"),
                                        (simulator, "the simulator", "insurer-simulator.log")):  # fmt: skip
                code = stop(process, STOP_TIMEOUT, name)
                if code not in (None, 0):
                    log(f"{name} exited with status {code}; its log ends:\n{tail(out / path)}")
            shutil.rmtree(data_dir, ignore_errors=True)


# ---------------------------------------------------------------- the checks


async def checks(run: Run) -> dict[str, Any]:
    """Every message finished, both sides holding the same settlements, and the ledger's invariants."""
    connection = await asyncpg.connect(run.database_url)
    try:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            still_open = await insurer_messages.open_count(connection)
            if still_open == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        booked = {
            row["message_id"]: (row["insurance"], row["critical_illness"])
            for row in await connection.fetch(
                """SELECT m.message_id, s.insurance, coalesce((s.other_funds->>'critical_illness')::bigint, 0)
                          AS critical_illness
                   FROM insurer_messages m
                   JOIN settlements s ON s.person_key = m.person_key AND s.settlement_id = m.settlement_id
                   WHERE m.kind = 'settle' AND m.state = 'committed' AND s.reversal_id IS NULL"""
            )
        }
        states = dict(
            await connection.fetch("SELECT state, count(*) FROM insurer_messages GROUP BY state ORDER BY state")
        )
        violations = await check_invariants(connection)
    finally:
        await connection.close()
    async with aiohttp.ClientSession() as session, session.get(f"{run.control_url}/sim/state") as response:
        state = await response.json()
    theirs = {
        record["msgid"]: (record["paid_by_fund_type"].get("390100", 0), record["paid_by_fund_type"].get("390200", 0))
        for record in state["settlements"]
        if record["state"] == "settled" and not record["msgid"].startswith(BENCH_INSTITUTION)
    }
    acknowledged = sum(len(side.latencies_ms) for side in run.sides if side.side == "gateway")
    return {
        "open_messages": still_open,
        "message_states": states,
        "booked_here": len(booked),
        "in_force_at_the_insurer": len(theirs),
        "only_here": len(booked.keys() - theirs.keys()),
        "only_at_the_insurer": len(theirs.keys() - booked.keys()),
        "amounts_differ": sum(1 for key in booked.keys() & theirs.keys() if booked[key] != theirs[key]),
        "acknowledged_201": acknowledged,
        "invariant_violations": [str(violation) for violation in violations][:10],
    }


# ---------------------------------------------------------------- report


def results(run: Run, check: dict[str, Any]) -> dict[str, Any]:
    args = run.args
    by_side: dict[str, Any] = {}
    for name in SIDES:
        sides = [side for side in run.sides if side.side == name]
        latencies = [value for side in sides for value in side.latencies_ms]
        errors: Counter[str] = sum((side.errors for side in sides), Counter())
        figures = summary(latencies, errors, sum(side.seconds for side in sides))
        cpu: Counter[str] = sum((Counter(side.cpu_seconds) for side in sides), Counter())
        figures["cpu_us_per_request"] = {
            process: round(seconds / figures["requests"] * 1e6) if figures["requests"] else None
            for process, seconds in cpu.items()
        }
        figures["rounds"] = [summary(side.latencies_ms, side.errors, side.seconds) for side in sides]
        by_side[name] = figures
    simulator_p99 = by_side["simulator"]["p99_ms"]
    gateway_p99 = by_side["gateway"]["p99_ms"]
    # Judged round by round, each gateway side against the simulator side just before it, and then the
    # median round: a stall of the shared machine in one side of one round moves one difference, not the
    # verdict (pooled, a one-second stall on the simulator's side would pass any gateway).
    by_round = [
        gateway["p99_ms"] - simulator["p99_ms"]
        for simulator, gateway in zip(by_side["simulator"]["rounds"], by_side["gateway"]["rounds"], strict=True)
    ]
    median_difference = statistics.median(by_round)
    checks_pass = (
        check["open_messages"] == 0
        and check["only_here"] == check["only_at_the_insurer"] == check["amounts_differ"] == 0
        and check["booked_here"] >= check["acknowledged_201"]
        and not check["invariant_violations"]
    )
    return {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "python": sys.version.split()[0],
        "settings": {
            "terminals": args.terminals,
            "delay_ms": args.delay_ms,
            "rate": args.rate,
            "rounds": args.rounds,
            "seconds_per_side": args.seconds,
            "warmup_s": args.warmup,
            "people": len(run.bills.county.people),
            "policy_dir": str(
                args.policy_dir.relative_to(ROOT) if args.policy_dir.is_relative_to(ROOT) else args.policy_dir
            ),
            "pool_max": args.pool_max,
        },
        "sides": by_side,
        "target": {
            "simulator_p99_ms": simulator_p99,
            "gateway_p99_ms": gateway_p99,
            "difference_ms": gateway_p99 - simulator_p99,
            "difference_by_round_ms": by_round,
            "median_round_difference_ms": median_difference,
            "margin_ms": args.margin_ms,
            "met": median_difference <= args.margin_ms,
        },
        "checks": check,
        "checks_pass": checks_pass,
        "errors": by_side["simulator"]["errors"] + by_side["gateway"]["errors"],
    }


def print_report(result: dict[str, Any]) -> None:
    settings = result["settings"]
    pace = (
        f"{settings['rate']:g} bills a second offered"
        f" (each terminal one every {settings['terminals'] / settings['rate']:.2f} s)"
        if settings["rate"]
        else "closed loop, no think time"
    )
    print(
        f"beside the insurer's core, {result['when']} on {result['cpus']} CPUs, Python {result['python']}\n"
        f"policy {settings['policy_dir']}; simulator delay {settings['delay_ms']} ms; {settings['terminals']} terminals"
        f" each side, {pace}; {settings['rounds']} rounds, {settings['seconds_per_side']:g} s a side in all after"
        f" {settings['warmup_s']:g} s of warm-up per round; {settings['people']:,} people\n"
        f"load average at the end {' / '.join(str(value) for value in result['load_average'])}\n"
    )
    columns = ("requests", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors")
    header = f"{'side':<28}{'round':>6}{columns[0]:>10}" + "".join(f"{name:>8}" for name in columns[1:])
    print(header)
    print("-" * len(header))
    for name in SIDES:
        figures = result["sides"][name]
        for number, row in enumerate([*figures["rounds"], figures], start=1):
            label = "all" if row is figures else str(number)
            print(
                f"{SIDE_NAMES[name]:<28}{label:>6}{row['requests']:>10,}{row['per_second']:>8,.0f}{row['p50_ms']:>8.1f}"
                f"{row['p90_ms']:>8.1f}{row['p99_ms']:>8.1f}{row['max_ms']:>8.1f}{row['errors']:>8}"
            )
    print()
    processes = ("gateway", "simulator", "postgres", "load generator")
    header = f"{'CPU µs per request':<28}" + "".join(f"{name:>16}" for name in processes) + f"{'total':>10}"
    print(header)
    print("-" * len(header))
    for name in SIDES:
        cpu = result["sides"][name]["cpu_us_per_request"]
        cells = [cpu.get(process) for process in processes]
        total = sum(cell for cell in cells if cell is not None)
        print(
            f"{SIDE_NAMES[name]:<28}"
            + "".join(f"{'-' if cell is None else f'{cell:,}':>16}" for cell in cells)
            + f"{total:>10,}"
        )
    for name in SIDES:
        kinds = result["sides"][name]["error_kinds"]
        if kinds:
            print(f"{SIDE_NAMES[name]} errors: {', '.join(f'{kind} × {count}' for kind, count in kinds.items())}")
    check = result["checks"]
    print(
        f"\nchecks: {check['acknowledged_201']:,} acknowledged, {check['booked_here']:,} booked here,"
        f" {check['in_force_at_the_insurer']:,} in force at the insurer; only here {check['only_here']},"
        f" only at the insurer {check['only_at_the_insurer']}, amounts differ {check['amounts_differ']};"
        f" open messages {check['open_messages']}; invariant violations {len(check['invariant_violations'])}:"
        f" {'PASS' if result['checks_pass'] else 'FAIL'}"
    )
    target = result["target"]
    rounds = ", ".join(f"{difference:+.1f}" for difference in target["difference_by_round_ms"])
    print(
        f"p99 over all rounds: gateway {target['gateway_p99_ms']:.1f} ms, simulator"
        f" {target['simulator_p99_ms']:.1f} ms, difference {target['difference_ms']:+.1f} ms\n"
        f"gateway p99 - simulator p99 by round: {rounds} ms; median {target['median_round_difference_ms']:+.1f} ms"
        f" vs target <= +{target['margin_ms']:g} ms: {'PASS' if target['met'] else 'FAIL'}"
    )


# ---------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--terminals", type=int, default=64, help="concurrent clients on each side (default 64)")
    parser.add_argument("--delay-ms", type=int, default=20, help="the simulator's delay per call (default 20)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per side, over all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of simulator-then-gateway (default 3)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds not counted at the start of each side")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="bills a second offered by all terminals together (default 0: closed loop)",
    )
    parser.add_argument("--margin-ms", type=float, default=15.0, help="the target's allowance over the simulator's p99")
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policy-dir", type=Path, default=POLICY_DIR)
    parser.add_argument("--pool-max", type=int, default=None, help="MEDSETTLE_POOL_MAX for the gateway")
    parser.add_argument("--out", type=Path, default=OUT, help="the processes' logs (default benchmarks/out)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON document")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.terminals < 1 or args.rounds < 1 or args.seconds <= 0 or args.warmup < 0 or args.rate < 0:
        parser().error("--terminals and --rounds at least 1, --seconds above 0, --warmup and --rate at least 0")
    if args.seconds / args.rounds > 600:
        parser().error("at most 600 s a side per round")
    args.side_seconds = args.seconds / args.rounds
    args.policy_dir = args.policy_dir.resolve()
    county = synthetic.build_county(args.seed, villages=100, townships=13, counties=3, people=args.people)
    try:
        with started(args, county) as run:
            prime(run)
            for number in range(1, args.rounds + 1):
                measure(run, Side("simulator", number), simulator_side)
                measure(run, Side("gateway", number), gateway_side)
            check = asyncio.run(checks(run))
            result = results(run, check)
    except SystemExit:
        raise
    except Exception as error:  # a measurement that failed: say why, exit 2
        log(f"FAILED: {type(error).__name__}: {error}")
        return 2
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print_report(result)
    return 0 if result["target"]["met"] and result["checks_pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
