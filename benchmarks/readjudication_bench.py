"""What re-adjudicating a back-dated registry list costs the gateway that works it (issue 17).

    .venv/bin/python benchmarks/readjudication_bench.py                      # 10,000 person-years, a few minutes
    .venv/bin/python benchmarks/readjudication_bench.py --people 1000        # a quick run

On a private database (as ``benchmarks/replay_bench.py`` makes one), a year of the synthetic county's history
is built (``build_history``: about ten bills a person); then a list grants 低保 (``minimum_allowance``) from
1 January to ``--people`` people without a hardship tier, and queues their person-years, as a list import
does. The queue is worked as a gateway's background runner works it, one person-year at a time
(``adapters.readjudication.run_one``), timing each: its wall time is how long it holds that person's row lock
(the most a live settlement of the same person can wait), its CPU time what it takes from the process that
also settles. At the default rate (``MEDSETTLE_READJUDICATE_PER_SECOND=20``) the runner's share of one core
is 20 x the CPU time a person-year takes; that share, and how long the list takes to work off, are printed.
Every person-year must end done, and ``medsettle check`` must hold.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from adapters import readjudication  # noqa: E402
from adapters.catalogue_store import load_catalogue  # noqa: E402
from adapters.check import check_invariants  # noqa: E402
from adapters.policy_files import load_policy_book, policy_dir  # noqa: E402
from benchmarks.load import private_database  # noqa: E402
from benchmarks.replay_bench import SAMPLE_CATALOGUE, build_history, load_average, log  # noqa: E402

DEFAULT_RATE = 20.0  # MEDSETTLE_READJUDICATE_PER_SECOND's default

GRANT = """
WITH chosen AS (
    SELECT a.person_key FROM accumulators a
    WHERE a.year = 2026 AND NOT EXISTS (
        SELECT 1 FROM memberships m WHERE m.person_key = a.person_key AND m.programme = 'hardship_aid')
    ORDER BY a.person_key LIMIT $1
), granted AS (
    INSERT INTO memberships (person_key, programme, code, effective_from, source)
    SELECT person_key, 'hardship_aid', 'minimum_allowance', '2026-01-01', 'benchmark' FROM chosen
)
INSERT INTO readjudications (person_key, year, cause_kind, cause_ref, cause, from_date)
SELECT person_key, 2026, 'registry', 'benchmark', 'minimum_allowance from 2026-01-01', '2026-01-01' FROM chosen
"""


async def work_the_list(url: str, people: int) -> dict[str, float]:
    book = load_policy_book(policy_dir())
    async with asyncpg.create_pool(url, min_size=1, max_size=2) as pool:
        async with pool.acquire() as connection:
            queued = int((await connection.execute(GRANT, people)).split()[-1])
            catalogue = await load_catalogue(connection)
        log(f"{queued:,} person-years queued; working them one at a time")
        walls, cpus, adjusted = [], [], 0
        while True:
            wall, cpu = time.perf_counter(), time.process_time()
            outcome = await readjudication.run_one(
                pool, policy_for=book.in_force, catalogue=catalogue, today=dt.date(2026, 12, 1)
            )
            if outcome is None:
                break
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            assert not outcome.needs_review, outcome
            adjusted += outcome.adjusted
        async with pool.acquire() as connection:
            pending = await connection.fetchval("SELECT count(*) FROM readjudications WHERE status <> 'done'")
            violations = await check_invariants(connection)
    cpu_ms = statistics.mean(cpus) * 1000
    return {
        "person_years": len(walls),
        "settlements_adjusted": adjusted,
        "wall_ms_mean": statistics.mean(walls) * 1000,
        "wall_ms_p99": sorted(walls)[int(len(walls) * 0.99) - 1] * 1000 if walls else 0.0,
        "cpu_ms_mean": cpu_ms,
        "core_share_at_default_rate": DEFAULT_RATE * cpu_ms / 1000,
        "minutes_for_10000_at_default_rate": 10_000 / DEFAULT_RATE / 60,
        "not_done": pending,
        "violations": len(violations),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=10_000, help="person-years granted aid back-dated (10,000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"load average at start: {load_average()}")
    with private_database() as url:
        settlements = args.people * 12  # the county has about ten bills a person; leave people without a tier
        log(f"building {settlements:,} settlements")
        asyncio.run(build_history(url, settlements, args.seed, catalogue=SAMPLE_CATALOGUE))
        figures = asyncio.run(work_the_list(url, args.people))
    print(f"load average at end: {load_average()}")
    print(f"person-years re-adjudicated      {figures['person_years']:,.0f}")
    print(f"settlements adjusted             {figures['settlements_adjusted']:,.0f}")
    print(
        f"row lock held per person-year    {figures['wall_ms_mean']:.1f} ms mean, {figures['wall_ms_p99']:.1f} ms p99"
    )
    print(f"CPU per person-year              {figures['cpu_ms_mean']:.2f} ms")
    print(f"share of one core at 20/s        {figures['core_share_at_default_rate']:.1%}")
    print(f"10,000 person-years at 20/s      {figures['minutes_for_10000_at_default_rate']:.1f} minutes")
    ok = figures["not_done"] == 0 and figures["violations"] == 0 and figures["person_years"] > 0
    print("all done, medsettle check holds" if ok else f"FAILED: {figures}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
