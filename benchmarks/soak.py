"""A bounded soak run: the load harness for a long while, sampled every ~10 s, to see what drifts.

    .venv/bin/python benchmarks/soak.py                         # 10 minutes, 16 terminals
    .venv/bin/python benchmarks/soak.py --run-time 2m --users 8 --sample-every 5

The same database, county, gateway and locust harness as ``benchmarks/load.py`` (and the same
options and pass/fail rules), plus, every ``--sample-every`` seconds:

* throughput: requests and failures per second and the recent p99, from locust's
  ``--csv-full-history`` file (``soak_stats_history.csv``), and settlements written per
  second, counted in the database;
* the gateway's resident memory: VmRSS from /proc/<pid>/status, summed over the gateway
  process and its workers;
* PostgreSQL connections to the database (``pg_stat_activity``; one of them is the sampler's);
* the idempotency table: rows, and ``pg_total_relation_size('idempotency_keys')``.

At the end it prints the time series, the drift (the mean of the last third of the samples
against the first third), and writes the series to ``<out>/soak.csv``. Rows in the
idempotency table grow with every settlement by design (first answers are kept for
``MEDSETTLE_IDEMPOTENCY_RETENTION_DAYS``); a flat RSS and connection count and a steady
throughput are what a healthy soak looks like.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
import load

PREFIX = "soak"


@dataclass
class Sample:
    elapsed_s: float
    requests_per_s: float
    failures_per_s: float
    p99_ms: float
    settlements_per_s: float
    gateway_rss_kib: int
    gateway_processes: int
    pg_connections: int
    idempotency_rows: int
    idempotency_bytes: int


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def history_totals(path: Path) -> list[tuple[float, int, int, float]]:
    """(timestamp, total requests, total failures, recent p99 ms) of every Aggregated row of the history."""
    rows = []
    with contextlib.suppress(FileNotFoundError), path.open(encoding="utf-8") as file:
        for row in csv.DictReader(file):
            if row.get("Name") == "Aggregated":
                with contextlib.suppress(ValueError, TypeError):
                    p99 = float(row["99%"]) if row["99%"] not in ("", "N/A") else 0.0
                    rows.append(
                        (float(row["Timestamp"]), int(row["Total Request Count"]), int(row["Total Failure Count"]), p99)
                    )
    return rows


class Sampler:
    """Samples the database and the gateway's memory; locust's figures are joined in at the end."""

    def __init__(self, run: load.Bench, loop: asyncio.Runner) -> None:
        self.run = run
        self.loop = loop
        self.connection: asyncpg.Connection | None = None
        self.raw: list[tuple[float, float, int, int, int, int, int, int]] = []
        # (elapsed, wall clock, settlements, rss, processes, connections, idempotency rows, bytes)
        self.start: tuple[float, int] = (time.time(), 0)  # wall clock and settlements when the load starts

    def baseline(self) -> None:
        """Remember the clock and the settlements so far, just before locust starts."""
        settlements, *_ = self.loop.run(asyncio.wait_for(self._database(), 20))
        self.start = (time.time(), settlements)

    async def _database(self) -> tuple[int, int, int, int]:
        if self.connection is None or self.connection.is_closed():
            self.connection = await asyncpg.connect(self.run.database_url)
        row = await self.connection.fetchrow(
            """SELECT (SELECT count(*) FROM settlements) AS settlements,
                      (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) AS connections,
                      (SELECT count(*) FROM idempotency_keys) AS idempotency_rows,
                      pg_total_relation_size('idempotency_keys') AS idempotency_bytes"""
        )
        return row["settlements"], row["connections"], row["idempotency_rows"], row["idempotency_bytes"]

    def __call__(self, elapsed: float) -> None:
        pids = load.descendants(self.run.gateway.pid)
        rss = rss_kib(pids)
        try:
            settlements, connections, rows, size = self.loop.run(asyncio.wait_for(self._database(), 20))
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            print(f"  sample at {elapsed:.0f} s: database unavailable ({type(error).__name__})", file=sys.stderr)
            return
        self.raw.append((elapsed, time.time(), settlements, rss, len(pids), connections, rows, size))
        print(
            f"  {elapsed:6.0f} s  rss {rss / 1024:7.1f} MiB  connections {connections:3d}  "
            f"settlements {settlements:9,d}  idempotency {rows:9,d} rows {size / 2**20:7.1f} MiB",
            flush=True,
        )

    def close(self) -> None:
        if self.connection is not None:
            self.loop.run(self.connection.close())

    def samples(self) -> list[Sample]:
        """Each raw sample with the throughput since the one before, from the history and the database."""
        history = history_totals(self.run.out / f"{PREFIX}_stats_history.csv")
        samples = []
        previous = (self.start[0], 0, 0)  # wall clock, requests, failures at the last sample (locust starts at 0)
        previous_db = self.start
        for elapsed, wall, settlements, rss, processes, connections, rows, size in self.raw:
            at = [row for row in history if row[0] <= wall]
            now = at[-1] if at else (wall, 0, 0, 0.0)
            requests_per_s = failures_per_s = 0.0
            if now[0] > previous[0]:
                span = now[0] - previous[0]
                requests_per_s = (now[1] - previous[1]) / span
                failures_per_s = (now[2] - previous[2]) / span
            settlements_per_s = 0.0
            if wall > previous_db[0]:
                settlements_per_s = (settlements - previous_db[1]) / (wall - previous_db[0])
            samples.append(
                Sample(
                    round(elapsed, 1),
                    round(requests_per_s, 1),
                    round(failures_per_s, 2),
                    now[3],
                    round(settlements_per_s, 1),
                    rss,
                    processes,
                    connections,
                    rows,
                    size,
                )
            )
            previous = (now[0], now[1], now[2])
            previous_db = (wall, settlements)
        return samples


def drift(samples: list[Sample]) -> dict[str, tuple[float, float, float | None]]:
    """Per measure: mean of the first third, of the last third, and the change in percent.
    The first sample (locust starting, users spawning) is left out when there are enough."""
    rated = samples[1:] if len(samples) > 3 else samples
    third = max(1, len(rated) // 3)
    first, last = rated[:third], rated[-third:]
    measures = {
        "requests_per_s": lambda s: s.requests_per_s,
        "settlements_per_s": lambda s: s.settlements_per_s,
        "p99_ms": lambda s: s.p99_ms,
        "gateway_rss_mib": lambda s: s.gateway_rss_kib / 1024,
        "pg_connections": lambda s: s.pg_connections,
        "idempotency_rows": lambda s: s.idempotency_rows,
        "idempotency_mib": lambda s: s.idempotency_bytes / 2**20,
    }
    result = {}
    for name, measure in measures.items():
        before = statistics.fmean(measure(s) for s in first)
        after = statistics.fmean(measure(s) for s in last)
        result[name] = (before, after, (after - before) / before * 100 if before else None)
    return result


def print_series(samples: list[Sample], changes: dict[str, tuple[float, float, float | None]]) -> None:
    header = (
        f"{'elapsed s':>9} {'req/s':>8} {'fail/s':>7} {'p99 ms':>7} {'settle/s':>8} {'RSS MiB':>8} "
        f"{'procs':>5} {'pg conns':>8} {'idem rows':>10} {'idem MiB':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for s in samples:
        print(
            f"{s.elapsed_s:>9.0f} {s.requests_per_s:>8.1f} {s.failures_per_s:>7.2f} {s.p99_ms:>7g} "
            f"{s.settlements_per_s:>8.1f} {s.gateway_rss_kib / 1024:>8.1f} {s.gateway_processes:>5} "
            f"{s.pg_connections:>8} {s.idempotency_rows:>10,} {s.idempotency_bytes / 2**20:>8.1f}"
        )
    print()
    print(f"drift, mean of the last third of the samples against the first third ({len(samples)} samples):")
    for name, (before, after, change) in changes.items():
        shown = f"{change:+.1f} %" if change is not None else "n/a"
        print(f"  {name:<18} {before:>12,.1f} -> {after:>12,.1f}   {shown}")


def main(argv: list[str] | None = None) -> int:
    parser = load.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.set_defaults(run_time="10m", users=16)
    args, extra = parser.parse_known_args(argv)
    if extra and extra[0] == "--":
        extra = extra[1:]
    if args.web:
        parser.error("--web: a soak is headless")
    load.check_arguments(parser, args)
    with load.bench(args, prefix=PREFIX) as run, asyncio.Runner() as loop:
        sampler = Sampler(run, loop)
        try:
            sampler.baseline()
            print(
                f"soak: {args.users} terminals for {args.run_time}, a sample every {args.sample_every:g} s", flush=True
            )
            status, seconds = load.run_locust(args, run, extra, prefix=PREFIX, every=args.sample_every, on_tick=sampler)
            verification = load.verify(run)
        finally:
            sampler.close()
    samples = sampler.samples()
    changes = drift(samples) if samples else {}
    out: Path = args.out
    with (out / "soak.csv").open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(Sample.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(sample) for sample in samples)
    summary, problems = load.summarise(args, run, PREFIX, seconds, verification)
    summary["locust_exit_status"] = status
    summary["drift"] = {
        name: {"first_third": b, "last_third": a, "change_percent": c} for name, (b, a, c) in changes.items()
    }
    (out / f"{PREFIX}-summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print_series(samples, changes)
    load.print_summary(summary)
    print(f"time series in {out / 'soak.csv'}; locust's CSV in {out}/{PREFIX}_stats*.csv")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
