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
* the settlements table (each row is its request's idempotency record): rows, and
  ``pg_total_relation_size('settlements')``.

At the end it prints the time series, the drift (the mean of the last third of the samples
against the first third), the memory verdict, and writes the series to ``<out>/soak.csv``.

The memory verdict looks only at the samples of the last ``--rss-window`` of the run (default
20 minutes), after the replay-protection nonce cache has filled: their RSS minimum, maximum,
first and last value and least-squares slope, and whether every sample lies within
``--rss-tolerance`` percent (default 5) of the window's first sample. It is judged, and a
failure fails the run, only when the run is at least 5 minutes longer than the window
(``--run-time 30m`` for the default window); a shorter run prints the figures without a verdict. The
settlements table grows with every settlement by design (a settlement is kept for good, and
answers its retries); a flat RSS and connection count and a steady
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
    gateway_rss_anon_kib: int
    gateway_processes: int
    pg_connections: int
    idempotency_rows: int
    idempotency_bytes: int


def rss_kib(pids: list[int], field: str = "VmRSS") -> int:
    """A /proc/<pid>/status memory field (VmRSS, RssAnon, ...) summed over ``pids``, in KiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
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
        self.raw: list[tuple[float, float, int, int, int, int, int, int, int]] = []
        # (elapsed, wall clock, settlements, rss, anonymous rss, processes, connections, idempotency rows, bytes)
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
                      (SELECT count(*) FROM settlements) AS idempotency_rows,
                      pg_total_relation_size('settlements') AS idempotency_bytes"""
        )
        return row["settlements"], row["connections"], row["idempotency_rows"], row["idempotency_bytes"]

    def __call__(self, elapsed: float) -> None:
        pids = load.descendants(self.run.gateway.pid)
        rss, anon = rss_kib(pids), rss_kib(pids, "RssAnon")
        try:
            settlements, connections, rows, size = self.loop.run(asyncio.wait_for(self._database(), 20))
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            print(f"  sample at {elapsed:.0f} s: database unavailable ({type(error).__name__})", file=sys.stderr)
            return
        self.raw.append((elapsed, time.time(), settlements, rss, anon, len(pids), connections, rows, size))
        print(
            f"  {elapsed:6.0f} s  rss {rss / 1024:7.1f} MiB (anon {anon / 1024:7.1f})  connections {connections:3d}  "
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
        for elapsed, wall, settlements, rss, anon, processes, connections, rows, size in self.raw:
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
                    anon,
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
        "gateway_rss_anon_mib": lambda s: s.gateway_rss_anon_kib / 1024,
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


WARM_UP_S = 300.0  # the least run time before the window: the nonce cache fills in the first 300 s


@dataclass
class RssWindow:
    """The gateway's RSS over the last part of the run, and whether it stayed flat."""

    window_s: float
    from_s: float
    samples: int
    first_mib: float
    last_mib: float
    min_mib: float
    max_mib: float
    change_percent: float
    slope_mib_per_min: float
    tolerance_percent: float
    within_tolerance: bool
    judged: bool  # the run was long enough for the window to start after the warm-up


def rss_window(samples: list[Sample], run_s: float, window_s: float, tolerance: float) -> RssWindow | None:
    """RSS figures over the samples taken in the last ``window_s`` of a run of ``run_s`` seconds."""
    start = max(0.0, run_s - window_s)
    chosen = [s for s in samples if s.elapsed_s >= start and s.gateway_rss_kib > 0]
    if len(chosen) < 2:
        return None
    mib = [s.gateway_rss_kib / 1024 for s in chosen]
    minutes = [s.elapsed_s / 60 for s in chosen]
    mean_t, mean_m = statistics.fmean(minutes), statistics.fmean(mib)
    spread = sum((t - mean_t) ** 2 for t in minutes)
    slope = sum((t - mean_t) * (m - mean_m) for t, m in zip(minutes, mib, strict=True)) / spread if spread else 0.0
    first = mib[0]
    return RssWindow(
        window_s=window_s,
        from_s=chosen[0].elapsed_s,
        samples=len(chosen),
        first_mib=first,
        last_mib=mib[-1],
        min_mib=min(mib),
        max_mib=max(mib),
        change_percent=(mib[-1] - first) / first * 100,
        slope_mib_per_min=slope,
        tolerance_percent=tolerance,
        within_tolerance=all(abs(m - first) <= first * tolerance / 100 for m in mib),
        judged=run_s >= window_s + WARM_UP_S,
    )


def print_rss_window(window: RssWindow | None) -> None:
    print()
    if window is None:
        print("gateway RSS: too few samples for the memory verdict")
        return
    print(
        f"gateway RSS over the last {window.window_s / 60:.4g} min ({window.samples} samples from "
        f"{window.from_s:.0f} s): first {window.first_mib:.1f} MiB, last {window.last_mib:.1f} MiB, "
        f"min {window.min_mib:.1f}, max {window.max_mib:.1f}; change {window.change_percent:+.1f} %, "
        f"slope {window.slope_mib_per_min:+.2f} MiB/min"
    )
    low, high = (
        window.first_mib * (1 - window.tolerance_percent / 100),
        window.first_mib * (1 + window.tolerance_percent / 100),
    )
    band = f"every sample within ±{window.tolerance_percent:g} % of the first ({low:.1f}-{high:.1f} MiB)"
    if not window.judged:
        print(
            f"memory verdict: not judged (the run is shorter than the window plus {WARM_UP_S / 60:g} min); {band}: "
            + ("yes" if window.within_tolerance else "no")
        )
    else:
        print(f"memory verdict: {band}: " + ("PASS" if window.within_tolerance else "FAIL"))


def print_series(samples: list[Sample], changes: dict[str, tuple[float, float, float | None]]) -> None:
    header = (
        f"{'elapsed s':>9} {'req/s':>8} {'fail/s':>7} {'p99 ms':>7} {'settle/s':>8} {'RSS MiB':>8} {'anon MiB':>8} "
        f"{'procs':>5} {'pg conns':>8} {'idem rows':>10} {'idem MiB':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for s in samples:
        print(
            f"{s.elapsed_s:>9.0f} {s.requests_per_s:>8.1f} {s.failures_per_s:>7.2f} {s.p99_ms:>7g} "
            f"{s.settlements_per_s:>8.1f} {s.gateway_rss_kib / 1024:>8.1f} {s.gateway_rss_anon_kib / 1024:>8.1f} "
            f"{s.gateway_processes:>5} "
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
    parser.add_argument(
        "--rss-window", default="20m", help="the memory verdict looks at the last part of the run (default 20m)"
    )
    parser.add_argument(
        "--rss-tolerance", type=float, default=5.0, help="percent RSS may move in the window (default 5)"
    )
    parser.set_defaults(run_time="10m", users=16)
    args, extra = parser.parse_known_args(argv)
    if extra and extra[0] == "--":
        extra = extra[1:]
    if args.web:
        parser.error("--web: a soak is headless")
    load.check_arguments(parser, args)
    try:
        window_s = load.parse_run_time(args.rss_window)
    except Exception as error:  # argparse.ArgumentTypeError
        parser.error(f"--rss-window: {error}")
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
    window = rss_window(samples, load.parse_run_time(args.run_time), window_s, args.rss_tolerance)
    summary["rss_window"] = asdict(window) if window is not None else None
    if window is not None and window.judged and not window.within_tolerance:
        problems.append(
            f"gateway RSS moved {window.min_mib:.1f}-{window.max_mib:.1f} MiB in the last "
            f"{window_s / 60:g} min, beyond ±{args.rss_tolerance:g} % of {window.first_mib:.1f} MiB"
        )
        summary["passed"], summary["problems"] = False, problems
    summary["drift"] = {
        name: {"first_third": b, "last_third": a, "change_percent": c} for name, (b, a, c) in changes.items()
    }
    (out / f"{PREFIX}-summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print_series(samples, changes)
    print_rss_window(window)
    load.print_summary(summary)
    print(f"time series in {out / 'soak.csv'}; locust's CSV in {out}/{PREFIX}_stats*.csv")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
