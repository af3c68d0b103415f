"""The item catalogue at a province's size: importing 200,000 items, and holding them in a gateway's memory.

    .venv/bin/python benchmarks/catalogue_bench.py                 # 200,000 items, about a minute in all
    .venv/bin/python benchmarks/catalogue_bench.py --items 50000 --json

In order, on a private database (a new one on ``DATABASE_URL``'s server, dropped afterwards; without
``DATABASE_URL`` an embedded PostgreSQL in a temporary folder, as ``benchmarks/load.py`` makes):

1. writes a seeded catalogue of ``--items`` items (``adapters.catalogue_files.write_sample_catalogue``,
   CSV) and a revision of it effective half a year later (about 1 % of items changed, 0.5 % removed,
   0.5 % added);
2. imports the first as the version effective 2026-01-01, as ``medsettle catalogue import`` does:
   reading the file, then ``import_catalogue`` (COPY into a temporary table, a set-based comparison,
   the changes written); then the revision, effective 2026-07-01, which writes only its changes;
3. loads every version with ``load_catalogue``, as a gateway does at start, in a fresh process: the
   time, the memory the ``Catalogue`` holds afterwards by ``tracemalloc`` (Python allocations still
   alive once the load's temporary rows are freed) and the growth of the process's resident memory
   (VmRSS: what the kernel sees, which also keeps memory the allocator has not handed back);
4. looks every code up once in the version in force on a day of each version (``view.get``).

Targets: the first version's import (reading and storing) under 60 s, and the catalogue in memory at
most 100 MB by both measures. Exit status 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for folder in (ROOT, HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import asyncpg  # noqa: E402
import load  # noqa: E402

from adapters import db  # noqa: E402
from adapters.catalogue_files import read_catalogue, write_sample_catalogue  # noqa: E402
from adapters.catalogue_store import ImportSummary, import_catalogue, load_catalogue  # noqa: E402
from settlement.catalogue import Catalogue  # noqa: E402

FIRST = dt.date(2026, 1, 1)
SECOND = dt.date(2026, 7, 1)
IMPORT_TARGET_SECONDS = 60.0
MEMORY_TARGET_MB = 100.0
MB = 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def import_file(url: str, path: Path, effective_from: dt.date) -> dict[str, Any]:
    """Read and import one file as ``medsettle catalogue import`` does; the times of both steps."""
    started = time.perf_counter()
    rows, rejected = read_catalogue(path)
    read_seconds = time.perf_counter() - started
    if rejected:
        raise SystemExit(f"{path.name}: {len(rejected)} rows rejected, first: line {rejected[0].line}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    connection = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        summary: ImportSummary = await import_catalogue(
            connection, rows, effective_from=effective_from, source=path.name, file_sha256=digest, actor="bench"
        )
        store_seconds = time.perf_counter() - started
        await connection.execute("ANALYZE catalogue_items")  # autovacuum's job; done here so runs compare
    finally:
        await connection.close()
    return {
        "file": path.name,
        "effective_from": effective_from.isoformat(),
        "items": summary.items,
        "rows_written": summary.added.count + summary.removed.count + summary.changed.count,
        "changes": summary.counts(),
        "read_s": read_seconds,
        "store_s": store_seconds,
        "total_s": read_seconds + store_seconds,
    }


async def load_once(url: str) -> Catalogue:
    connection = await asyncpg.connect(url)
    try:
        return await load_catalogue(connection)
    finally:
        await connection.close()


def measure_load(url: str) -> dict[str, Any]:
    """The load's time and resident-memory growth on one load, then its live allocations on another, in a
    process of its own: this one has read two big files, and its allocator would serve the load from memory
    they freed, hiding the growth. tracemalloc slows Python down, so the timed load runs without it."""
    completed = subprocess.run(
        [sys.executable, __file__, "--measure-load", url], capture_output=True, text=True, check=True, timeout=600
    )
    figures: dict[str, Any] = json.loads(completed.stdout)
    return figures


def measure_load_here(url: str) -> dict[str, Any]:
    gc.collect()
    rss_before = rss_bytes()
    started = time.perf_counter()
    catalogue = asyncio.run(load_once(url))
    seconds = time.perf_counter() - started
    gc.collect()
    rss_growth = rss_bytes() - rss_before
    del catalogue
    gc.collect()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    catalogue = asyncio.run(load_once(url))
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "load_s": seconds,
        "codes": len(catalogue),
        "versions": len(catalogue.versions),
        "traced_mb": (after - before) / MB,
        "traced_peak_mb": (peak - before) / MB,
        "rss_growth_mb": rss_growth / MB,
    }


def measure_lookups(catalogue: Catalogue, codes: list[str]) -> dict[str, float]:
    """ns per ``view.get`` over every code, in a view of each version."""
    figures = {}
    for day in catalogue.versions:
        view = catalogue.on(day)
        assert view is not None
        get = view.get
        started = time.perf_counter_ns()
        for code in codes:
            get(code)
        figures[day.isoformat()] = (time.perf_counter_ns() - started) / len(codes)
    return figures


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    first_file, second_file = folder / "catalogue-v1.csv", folder / "catalogue-v2.csv"
    write_sample_catalogue(first_file, args.items, args.seed)
    write_sample_catalogue(second_file, args.items, args.seed, revision=1)
    with load.private_database() as url:
        asyncio.run(_migrate(url))
        imports = [asyncio.run(import_file(url, first_file, FIRST)), asyncio.run(import_file(url, second_file, SECOND))]
        loading = measure_load(url)
        codes = [row.code for row in read_catalogue(second_file)[0]]
        lookups = measure_lookups(asyncio.run(load_once(url)), codes)
    return {"items": args.items, "seed": args.seed, "imports": imports, "load": loading, "lookup_ns": lookups}


async def _migrate(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await db.migrate(connection)
    finally:
        await connection.close()


def verdicts(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    first = result["imports"][0]
    loading = result["load"]
    return [
        (
            f"import of {first['items']:,} items",
            f"{first['total_s']:.1f} s vs target < {IMPORT_TARGET_SECONDS:g} s",
            first["total_s"] < IMPORT_TARGET_SECONDS,
        ),
        (
            "catalogue in memory (tracemalloc)",
            f"{loading['traced_mb']:.1f} MB vs target <= {MEMORY_TARGET_MB:g} MB",
            loading["traced_mb"] <= MEMORY_TARGET_MB,
        ),
        (
            "catalogue in memory (RSS growth)",
            f"{loading['rss_growth_mb']:.1f} MB vs target <= {MEMORY_TARGET_MB:g} MB",
            loading["rss_growth_mb"] <= MEMORY_TARGET_MB,
        ),
    ]


def print_report(result: dict[str, Any]) -> None:
    where = "DATABASE_URL's server" if os.environ.get("DATABASE_URL") else "embedded PostgreSQL"
    load_average = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"item catalogue, {result['items']:,} items (seed {result['seed']}), {where}, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load_average}\n"
    )
    print(f"{'import':<32} {'read s':>8} {'store s':>8} {'total s':>8} {'rows written':>13}")
    for figures in result["imports"]:
        label = f"{figures['file']} from {figures['effective_from']}"
        print(
            f"{label:<32} {figures['read_s']:8.2f} {figures['store_s']:8.2f} {figures['total_s']:8.2f} "
            f"{figures['rows_written']:13,}"
        )
    loading = result["load"]
    print(
        f"\nload_catalogue: {loading['codes']:,} codes over {loading['versions']} versions in "
        f"{loading['load_s']:.2f} s; held: {loading['traced_mb']:.1f} MB (tracemalloc; peak during the load "
        f"{loading['traced_peak_mb']:.1f} MB), RSS grew {loading['rss_growth_mb']:.1f} MB"
    )
    print(
        "view.get: "
        + ", ".join(f"{nanoseconds:.0f} ns a code in version {day}" for day, nanoseconds in result["lookup_ns"].items())
    )
    print()
    for name, figure, passed in verdicts(result):
        print(f"{name}: {figure}: {'PASS' if passed else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200_000, help="items in the catalogue (default 200,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the report")
    parser.add_argument("--measure-load", metavar="URL", help=argparse.SUPPRESS)  # the child of measure_load
    args = parser.parse_args(argv)
    if args.measure_load:
        print(json.dumps(measure_load_here(args.measure_load)))
        return 0
    with tempfile.TemporaryDirectory(prefix="medsettle-catalogue-bench-") as folder:
        result = run(args, Path(folder))
    passed = all(verdict for _, _, verdict in verdicts(result))
    if args.json:
        result["targets"] = [{"name": n, "figure": f, "passed": p} for n, f, p in verdicts(result)]
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
