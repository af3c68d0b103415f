"""What the background re-adjudication runner costs the settle path (issue 17), side by side in one run.

    .venv/bin/python benchmarks/readjudication_settle_bench.py                       # 10,000 people, ~8 minutes
    .venv/bin/python benchmarks/readjudication_settle_bench.py --people 1000 --pairs 3 --window-seconds 10

On a private database (as ``benchmarks/readjudication_bench.py`` makes one): a year of the synthetic county
(``build_history``, about ten bills a person), then a list that grants 低保 (``minimum_allowance``) from 1
January to ``--people`` people without a hardship tier and queues their person-years, as a list import does.

Then, in this one process, wired as a gateway wires them (gateway/http/app.py): the store with the gateway's
default pool and batching, the use case (``gateway.service.Service``), and its background runner on the same
pool at the default ``MEDSETTLE_READJUDICATE_PER_SECOND`` (20 person-years a second). A steady stream of the
county's bills (``benchmarks.county.bill_stream``, service date today, so some are the very people being
re-adjudicated) is settled through ``Service.settle`` at ``--rate`` bills a second, open loop: each bill
starts on its tick whether or not the ones before have answered, and its latency runs from its tick to its
answer, so time spent queueing behind the runner counts. The stream runs in ``--pairs`` pairs of windows of
``--window-seconds`` each, the runner stopped in one and working the list in the other, alternating (off,
on, off, on, ...) after a discarded warm-up window, so both modes see the same machine, the same database
and the same drift.

It prints, per mode, the settlements, p50, p99 and max latency, and the ratios on/off, over all windows and
as the median of each pair's own ratio (a pair's two windows are a few seconds apart, so a neighbour's load
that comes and goes on a shared machine weighs on both); how many person-years the runner worked while on
(and how many were left, so the list never ran dry); and whether ``medsettle check`` holds at the end.
Latency is never a pass/fail here: the exit status is 1 only when nothing was settled in a mode, the list
ran dry, a stopped runner left a transaction open, or an invariant broke.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import msgspec  # noqa: E402

from adapters import db  # noqa: E402
from adapters.check import check_invariants  # noqa: E402
from adapters.policy_files import load_policy_book, policy_dir  # noqa: E402
from adapters.store import Store  # noqa: E402
from benchmarks.county import bill_stream  # noqa: E402
from benchmarks.load import private_database  # noqa: E402
from benchmarks.readjudication_bench import DEFAULT_RATE, GRANT  # noqa: E402
from benchmarks.replay_bench import (  # noqa: E402
    KEY_ENCRYPTION_KEY,
    PEPPER,
    SAMPLE_CATALOGUE,
    build_history,
    county_for,
    load_average,
)
from gateway import api_models as api  # noqa: E402
from gateway.config import load_settings  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.service import Service, Terminal, china_today  # noqa: E402
from settlement.errors import SettlementError  # noqa: E402

SETTLEMENTS_PER_PERSON = 12  # as readjudication_bench builds the year: about ten bills a person


def log(message: str) -> None:
    print(f"[settle-path-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Window:
    """One window of the stream: its mode, each settlement's latency (seconds), the refusals, and the
    person-years the runner finished in it."""

    runner: bool
    latencies: list[float] = field(default_factory=list)
    refused: int = 0
    person_years: int = 0


class Stream:
    """The county's bills at a steady rate through ``Service.settle``, each timed from its tick."""

    def __init__(self, service: Service, county: Any, rate: float, seed: int) -> None:
        self.service = service
        self.rate = rate
        self.bills = bill_stream(county, random.Random(seed), service_date=china_today())
        self.clinic_of = {terminal.terminal_id: terminal.clinic_id for terminal in county.terminal_by_clinic.values()}

    async def _one(self, window: Window, tick: float) -> None:
        terminal_id, body = next(self.bills)
        request = msgspec.convert(body, api.SettleRequest)
        try:
            await self.service.settle(Terminal(terminal_id, self.clinic_of[terminal_id], "terminal"), request)
        except SettlementError:  # a bill the engine or the registry refuses: not a settlement, not timed
            window.refused += 1
            return
        window.latencies.append(time.perf_counter() - tick)

    async def run(self, window: Window, seconds: float) -> None:
        """Start a bill every 1/rate seconds for ``seconds``; then wait (bounded) for the last to answer."""
        started = time.perf_counter()
        interval = 1.0 / self.rate
        in_flight: set[asyncio.Task[None]] = set()
        for number in range(int(seconds * self.rate)):
            tick = started + number * interval
            await asyncio.sleep(max(0.0, tick - time.perf_counter()))
            task = asyncio.create_task(self._one(window, tick))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight, timeout=30)


async def pending(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM readjudications WHERE status = 'pending'"))


async def idle_in_transaction(pool: asyncpg.Pool) -> int:
    """Connections left inside a transaction (a stopped runner must leave none)."""
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%'"
        )
    )


async def left_in_a_transaction(pool: asyncpg.Pool, within: float = 10.0) -> int:
    """Connections still inside a transaction once a cancelled one's rollback has had ``within`` seconds to
    reach the server (a loaded machine takes longer than a quiet one; a stuck transaction never leaves)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (left := await idle_in_transaction(pool)) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return left


async def side_by_side(url: str, people: int, args: argparse.Namespace) -> dict[str, Any]:
    """Grant the list, then run the stream in alternating windows with the runner off and on."""
    settings = load_settings({})
    county = county_for(people * SETTLEMENTS_PER_PERSON, args.seed)
    book = load_policy_book(policy_dir())
    pool = await db.create_pool(url, max_size=settings.pool_max)
    store = Store(pool, batch_max=settings.settle_batch_max, batch_lanes=settings.settle_batch_lanes)
    try:
        async with pool.acquire() as connection:
            queued = int((await connection.execute(GRANT, people)).split()[-1])
        log(f"{queued:,} person-years queued for re-adjudication")
        service = Service(
            store,
            book,
            PEPPER,
            Metrics(),
            key_encryption_key=KEY_ENCRYPTION_KEY,
            readjudicate_per_second=DEFAULT_RATE,
        )
        await service.load_reference()
        await service.refresh_catalogue()
        store.start()
        stream = Stream(service, county, args.rate, args.seed)
        await stream.run(Window(runner=False), args.warm_up)  # pool, caches, the planner: not counted
        windows = []
        stuck = 0
        for mode in [False, True] * args.pairs:
            window = Window(runner=mode)
            before = await pending(pool)
            runner = asyncio.create_task(service.readjudication.run()) if mode else None
            await stream.run(window, args.window_seconds)
            if runner is not None:
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
                stuck += await left_in_a_transaction(pool)
            window.person_years = before - await pending(pool)
            windows.append(window)
            log(
                f"runner {'on ' if mode else 'off'}: {len(window.latencies):,} settled, "
                f"p50 {percentile(window.latencies, 0.50) * 1000:.1f} ms, "
                f"p99 {percentile(window.latencies, 0.99) * 1000:.1f} ms, {window.person_years} person-years"
            )
        left = await pending(pool)
    finally:
        await store.stop()
        await pool.close()
    connection = await asyncpg.connect(url)
    try:
        violations = await check_invariants(connection)
    finally:
        await connection.close()
    return {"queued": queued, "windows": windows, "left": left, "stuck": stuck, "violations": violations}


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def figures(windows: list[Window], runner: bool) -> dict[str, float]:
    latencies = [latency for window in windows if window.runner == runner for latency in window.latencies]
    return {
        "settled": len(latencies),
        "refused": sum(window.refused for window in windows if window.runner == runner),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies, default=0.0) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else 0.0,
        "person_years": sum(window.person_years for window in windows if window.runner == runner),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=10_000, help="person-years granted aid back-dated (10,000)")
    parser.add_argument("--rate", type=float, default=50.0, help="bills settled a second, steady (50)")
    parser.add_argument("--pairs", type=int, default=6, help="pairs of windows, runner off then on (6)")
    parser.add_argument("--window-seconds", type=float, default=20.0, help="each window's length (20)")
    parser.add_argument("--warm-up", type=float, default=5.0, help="seconds of stream first, not counted (5)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.people < 1 or args.pairs < 1 or args.rate <= 0 or args.window_seconds <= 0:
        parser.error("--people, --pairs, --rate and --window-seconds must be positive")
    load_at_start = load_average()
    started = time.perf_counter()
    with private_database() as url:
        log(f"building {args.people * SETTLEMENTS_PER_PERSON:,} settlements")
        asyncio.run(build_history(url, args.people * SETTLEMENTS_PER_PERSON, args.seed, catalogue=SAMPLE_CATALOGUE))
        result = asyncio.run(side_by_side(url, args.people, args))
    off, on = figures(result["windows"], False), figures(result["windows"], True)
    print(f"load average at start: {load_at_start}, at end: {load_average()}")
    print(
        f"{args.people:,} person-years queued; {args.pairs} pairs of {args.window_seconds:g} s windows at "
        f"{args.rate:g} bills/s; runner at {DEFAULT_RATE:g} person-years/s; {time.perf_counter() - started:.0f} s"
    )
    print(f"{'runner':<8}{'settled':>9}{'refused':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'person-years':>14}")
    for name, row in (("off", off), ("on", on)):
        print(
            f"{name:<8}{row['settled']:>9,.0f}{row['refused']:>9,.0f}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
            f"{row['max_ms']:>9.1f}{row['person_years']:>14,.0f}"
        )
    pairs = [result["windows"][index : index + 2] for index in range(0, len(result["windows"]), 2)]
    for name, share in (("p50", 0.50), ("p99", 0.99)):
        overall = on[f"{name}_ms"] / off[f"{name}_ms"] if off[f"{name}_ms"] else float("nan")
        each = [
            percentile(runner_on.latencies, share) / percentile(runner_off.latencies, share)
            for runner_off, runner_on in pairs
            if percentile(runner_off.latencies, share)
        ]
        print(
            f"ratio on/off {name}: {overall:.2f} over all windows; median of the pairs' {statistics.median(each):.2f}"
            f" (each pair: {', '.join(f'{ratio:.2f}' for ratio in each)})"
        )
    print(f"person-years still pending at the end: {result['left']:,}")
    problems = []
    if not off["settled"] or not on["settled"]:
        problems.append("a mode settled nothing")
    if result["left"] == 0:
        problems.append("the list ran dry: the runner idled in part of its windows (use more --people)")
    if result["stuck"]:
        problems.append(f"{result['stuck']} connection(s) left in a transaction by a stopped runner")
    if result["violations"]:
        problems.append(f"medsettle check: {result['violations'][:5]}")
    print("medsettle check holds" if not result["violations"] else "medsettle check FAILED")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
