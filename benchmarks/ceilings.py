"""The ceiling comparison: what the machine allows, and how close the gateway comes, in one run.

    .venv/bin/python benchmarks/ceilings.py [--duration 15] [--people 20000] [--pool-max N] [--workers N] [--json]
        [--storage-settlements 100000] [--only engine,http,gateway,storage,database]

Five measurements, side by side, on this machine and this PostgreSQL:

1. HTTP ceiling: ``benchmarks/bare_http.py`` (a bare aiohttp handler returning a small JSON
   body, uvloop when installed, like the gateway) in its own process, hammered by ``wrk``.
2. Database ceiling: ``pgbench`` running the gateway's own settlement write, ``WRITE_SETTLEMENTS`` of
   ``adapters/settlement_sql.py`` for a batch of one (the accumulator row updated at the version it was
   read at, or created, and the settlement row inserted: one statement, one durable commit), as
   ``benchmarks/pgbench_scripts.py`` generates it from that statement at run time; a random person each
   time, at 8 and 16 clients (the best is the ceiling); then, at the best client count, the gateway's whole
   database work per settlement: its read, ``READ_FOR_SETTLE``, then the write, two round trips.
3. The gateway: ``medsettle serve`` on the same server, settling real signed bills of the
   synthetic county (``benchmarks/county.py``) replayed by ``wrk`` with
   ``benchmarks/wrk/settle.lua`` at 16 and 64 concurrent terminals with no think time;
   settlements per second and p50/p99 latency, then the invariant check (``medsettle check``).
4. Storage per settlement: a gateway of its own settles ``--storage-settlements`` bills (default
   100,000) the same way, at 64 terminals, in rounds of about two minutes (signatures are good for
   300 s; wrk is interrupted once the round's bills are stored, so a round may store a few more).
   Before and after, with no gateway running, a snapshot of every table of the public schema,
   whatever the migrations call them: ``pg_total_relation_size`` (heap, indexes, TOAST, free space
   and visibility maps) and ``pg_stat_user_tables``' ``n_tup_ins``, ``n_tup_upd``, ``n_tup_del``.
   Bytes per settlement is the growth of the sum of sizes over the growth of ``SELECT count(*) FROM
   settlements``; rows written per settlement the same with the sum of the three counters (shown as
   inserted, updated, deleted), and both by table. No VACUUM and no CHECKPOINT: what a live system
   holds, dead row versions included. PostgreSQL publishes a session's counters lazily (within
   10 s once idle, and when it ends; ``pg_stat_force_next_flush()`` acts only on the caller's own),
   so the snapshot is read once the gateway has stopped, and read again until the counters have
   not moved for 2 s (at most 30 s; the row says so if they still moved). File sizes grow by whole
   8 kB pages, so a small ``--storage-settlements`` rounds the bytes up a little.
5. The engine alone: ``benchmarks/engine_bench.py``, a 20-line inpatient bill along the six-step three-tier chain.

They run in the order 5, 1, 3, 4, 2: pgbench's database is a copy of the seeded one, taken before
the gateway starts, and its transactions write records (the compressed items and result), request
fingerprints and nonces sampled from the gateway's own settlements, so both write the same bytes. If
the statements hold a parameter the script generator has no value for, or the schema no longer has a
table or column the setup or the sampling names, the database ceiling is skipped, with that reason,
and the rest still reports.

It prints a table of the figures, one of the targets (met or not met), one of storage per
settlement by table (tables that did not change left out), and one of the CPU time each
process spent per operation (the serving process, all of PostgreSQL's processes,
the load generator), which shows where the gateway loses against the ceilings. The exit
code is 0 when every target is met, 1 when one is not, 2 when a measurement could not be
taken. ``--json`` also writes everything to ``benchmarks/out/ceilings-<time>.json``;
``--only gateway,database`` (for example) runs a subset.

With ``DATABASE_URL`` set, it creates two private databases on that server (one for the
gateway, a copy for pgbench, whose rows the append-only ledger could never give back) and
drops them at the end; without it, it starts an embedded PostgreSQL in a temporary folder.
Everything listens on 127.0.0.1, and only the processes it started are stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import msgspec  # noqa: E402

from adapters import db, identity, signing  # noqa: E402
from adapters.check import check_invariants  # noqa: E402
from adapters.policy_files import load_policy_file  # noqa: E402
from adapters.settlement_sql import Record, encode_record  # noqa: E402
from benchmarks import load, pgbench_scripts  # noqa: E402
from benchmarks.county import bill_stream, build_county, load_county  # noqa: E402
from settlement import Accumulators, Bill, LineItem, PersonStatus, settle  # noqa: E402

try:
    import psutil
except ImportError:  # pragma: no cover - comes with the embedded extra; only the CPU breakdown needs it
    psutil = None

BENCHMARKS = ROOT / "benchmarks"
OUT = BENCHMARKS / "out"
SETTLE_PATH = "/v1/settlements"
PEPPER = b"ceilings-benchmark-pepper"
KEY_ENCRYPTION_KEY = bytes(range(32, 64))

# The targets.
TARGET_DB_RATIO = 0.6
STRETCH_DB_RATIO = 1.0
TARGET_P99_MS = {16: 15.0, 64: 50.0}
TARGET_ENGINE_US = 50.0
TARGET_BYTES_PER_SETTLEMENT = 2048
TARGET_CPU_US = 600.0  # the gateway's and PostgreSQL's CPU per settlement, at TARGET_CPU_TERMINALS
TARGET_CPU_TERMINALS = 64

STORAGE_TERMINALS = 64
STATS_TIMEOUT = 30.0  # seconds to wait for PostgreSQL to publish the writers' row counters

_encoder = msgspec.json.Encoder()


class Skipped(Exception):
    """A measurement that cannot be taken as things are (not a failure): shown as skipped, with the reason."""


# The schema has moved on from what a measurement's SQL names: a table or a column is gone.
SCHEMA_MISMATCH = (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError)
PGBENCH_SCHEMA_MISMATCH = re.compile(r'ERROR:\s+((?:relation|column) "[^"]+"(?: of relation "[^"]+")? does not exist)')


def log(message: str) -> None:
    print(f"[ceilings {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


class Processes:
    """The processes this script started, stopped in reverse order by their own handles, never by name."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], **options: Any) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, **options)
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if process in self.running:
            self.running.remove(process)
        return process.returncode

    def stop_all(self) -> None:
        for process in reversed(list(self.running)):
            self.stop(process)


class CpuMeter:
    """CPU seconds (user + system) used by process trees during a measurement, to show where the time goes.

    Needs psutil (installed with the embedded PostgreSQL); without it there are no figures. A process
    that starts during the measurement counts from zero. One that exits is counted through its parent's
    children_* times once reaped (PostgreSQL's postmaster reaps its backends): its whole life lands there,
    so what it had used when the measurement started is taken off again. A tree is read once no process
    in it has started or ended for a moment, so backends exiting as a load generator disconnects are read
    either before they go or once reaped, never lost in between. The load generators (wrk, pgbench) are
    measured from this process's waited-for children instead.
    """

    QUIET = 0.2  # seconds with the same processes before a tree's reading is taken
    SETTLE_TIMEOUT = 3.0

    def __init__(self) -> None:
        self.roots: dict[str, int] = {}
        self._before: dict[str, dict[int, float]] = {}
        self._children_before = 0.0

    def watch(self, name: str, pid: int | None) -> None:
        if pid is not None and psutil is not None:
            self.roots[name] = pid

    def forget(self, name: str) -> None:
        self.roots.pop(name, None)

    def _times(self, pid: int) -> dict[int, float]:
        assert psutil is not None
        times = {}
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    cpu = process.cpu_times()
                    times[process.pid] = cpu.user + cpu.system + cpu.children_user + cpu.children_system
        except psutil.Error:
            pass
        return times

    def _settled_times(self, pid: int) -> dict[int, float]:
        """The tree's times, read again until two readings ``QUIET`` seconds apart find the same processes."""
        times = self._times(pid)
        deadline = time.monotonic() + self.SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            time.sleep(self.QUIET)
            again = self._times(pid)
            if again.keys() == times.keys():
                return again
            times = again
        return times

    @staticmethod
    def _children_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def start(self) -> None:
        self._before = {name: self._settled_times(pid) for name, pid in self.roots.items()}
        self._children_before = self._children_seconds()

    def stop(self, load_generator: str) -> dict[str, float]:
        """CPU seconds per watched tree, and the load generator's, since start()."""
        used = {load_generator: self._children_seconds() - self._children_before}
        for name, pid in self.roots.items():
            before = self._before.get(name, {})
            after = self._settled_times(pid)
            gone = sum(seconds for process, seconds in before.items() if process not in after)
            used[name] = sum(seconds - before.get(process, 0.0) for process, seconds in after.items()) - gone
        return used


def per_operation_us(cpu: dict[str, float], operations: float) -> dict[str, float]:
    return {name: round(seconds / operations * 1e6, 1) for name, seconds in cpu.items()} if operations else {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], *, timeout: float, what: str) -> None:
    """Poll ``url`` until it answers 200; fail if the process exits, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} was not ready after {timeout:g} s")


def tool(name: str, fallback: Path | None = None) -> str:
    found = shutil.which(name)
    if found:
        return found
    if fallback is not None and fallback.exists():
        return str(fallback)
    raise RuntimeError(f"{name} is not installed (Debian: apt-get install {name})")


def pgserver_binary(name: str) -> Path | None:
    """A binary of the embedded PostgreSQL (the pgserver wheel), if it is installed."""
    try:
        import pgserver
    except ImportError:
        return None
    return Path(pgserver.__file__).parent / "pginstall" / "bin" / name


def version_of(command: list[str]) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (completed.stdout or completed.stderr).strip().splitlines()
    return text[0] if text else "unknown"


# ---------------------------------------------------------------- wrk


def run_wrk(
    url: str,
    *,
    connections: int,
    threads: int,
    duration: int,
    script: Path,
    script_args: list[str],
    stop_when: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """One wrk run with one of our Lua scripts; returns the script's CEILINGS_JSON line, parsed.

    With ``stop_when``, it is asked every second and wrk is interrupted (SIGINT: wrk stops its threads and
    still reports) as soon as it answers True, instead of running for the whole ``duration``."""
    command = [
        tool("wrk"),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    if script_args:
        command += ["--", *script_args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + duration + 120
    try:
        if stop_when is not None:
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(1.0)
                if process.poll() is None and stop_when():
                    process.send_signal(signal.SIGINT)
                    break
        stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    for line in stdout.splitlines():
        if line.startswith("CEILINGS_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("CEILINGS_JSON "))
            result["command"] = " ".join([*command[1:7], "-s", f"benchmarks/wrk/{script.name}", url])
            return result
    raise RuntimeError(f"wrk printed no result (exit {process.returncode}): {stderr.strip()[-500:]}")


def steady_rate(result: dict[str, Any], *, skip: int = 1) -> tuple[float, int]:
    """Settlements per second over the whole seconds of the run, leaving out the first (partial) second,
    ``skip`` more for start-up, and the last (partial) one; seconds with nothing count as zero. A run too
    short for that window is measured from its first request sent to its last 201 received.
    Returns the rate and the seconds it covers (0 for the short-run fallback)."""
    counts = {second: count for second, count in result["per_second"]}
    if not counts:
        return 0.0, 0
    first, last = min(counts), max(counts)
    window = range(first + 1 + skip, last)
    if len(window) >= 3:
        return sum(counts.get(second, 0) for second in window) / len(window), len(window)
    elapsed = result["last_created"] - result["first_sent"]
    return (result["created"] / elapsed if elapsed > 0 else 0.0), 0


# ---------------------------------------------------------------- signed requests


def write_signed_requests(
    prefix: Path,
    count: int,
    threads: int,
    stream: Iterator[tuple[str, dict[str, Any]]],
    keys: dict[str, tuple[str, str]],
    host: str,
) -> int:
    """Sign ``count`` settle requests now and write them, round robin, to PREFIX.0 .. PREFIX.<threads-1>
    in the framing benchmarks/wrk/settle.lua reads. Returns the bytes written."""
    files = [open(f"{prefix}.{index}", "wb") for index in range(threads)]  # noqa: SIM115 - closed below
    written = 0
    try:
        for index in range(count):
            terminal_id, body = next(stream)
            key_id, secret = keys[terminal_id]
            payload = _encoder.encode(body)
            headers = signing.signed_headers(key_id, secret, "POST", SETTLE_PATH, payload)
            head = (
                f"POST {SETTLE_PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n"
                + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            )
            raw = head.encode() + b"\r\n" + payload
            record = b"%08d\n" % len(raw) + raw
            files[index % threads].write(record)
            written += len(record)
    finally:
        for file in files:
            file.close()
    return written


# ---------------------------------------------------------------- database


def with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


async def _execute(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def checkpoint(url: str) -> None:
    """Start each measurement from a fresh checkpoint, so one run's dirty pages are not flushed in the next."""
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        await _execute(url, "CHECKPOINT")


class Database:
    """Two private databases, on DATABASE_URL's server or an embedded one: the gateway's, and pgbench's copy."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server: Any = None
        self.server_url = ""
        self.kind = ""
        self.created: list[str] = []
        name = f"medsettle_ceilings_{uuid.uuid4().hex[:10]}"
        self.gateway_name = name
        self.pgbench_name = f"{name}_pgbench"

    def open(self) -> None:
        url = os.environ.get("DATABASE_URL")
        if url:
            self.kind, self.server_url = "DATABASE_URL", url
        else:
            self.kind = "embedded"
            self.server_url, self.server = db.start_embedded(self.workdir / "pg")
        asyncio.run(_execute(self.server_url, f'CREATE DATABASE "{self.gateway_name}"'))
        self.created.append(self.gateway_name)

    @property
    def gateway_url(self) -> str:
        return with_database(self.server_url, self.gateway_name)

    @property
    def pgbench_url(self) -> str:
        return with_database(self.server_url, self.pgbench_name)

    def clone_for_pgbench(self) -> None:
        """pgbench's database starts as a copy of the seeded one (no session may be connected to it)."""
        asyncio.run(_execute(self.server_url, f'CREATE DATABASE "{self.pgbench_name}" TEMPLATE "{self.gateway_name}"'))
        self.created.append(self.pgbench_name)

    def postmaster_pid(self) -> int | None:
        """The server's main process when it runs on this machine (for the CPU breakdown), else None."""
        if self.server is not None:
            return int(self.server.get_pid())
        if psutil is None:
            return None

        async def backend_pid() -> int:
            connection = await asyncpg.connect(self.gateway_url)
            try:
                return int(await connection.fetchval("SELECT pg_backend_pid()"))
            finally:
                await connection.close()

        try:
            backend = psutil.Process(asyncio.run(backend_pid()))
            parent = backend.parent()
            if parent is not None and "postgres" in parent.name():
                return int(parent.pid)
        except psutil.Error:
            pass
        return None  # a server on another machine, or one whose processes we cannot see

    def close(self) -> None:
        for name in reversed(self.created):
            try:
                asyncio.run(_execute(self.server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as error:  # keep cleaning up the rest
                log(f"could not drop database {name}: {error}")
        self.created.clear()
        if self.server is not None:
            self.server.cleanup()
            self.server = None


async def server_facts(url: str) -> dict[str, str]:
    connection = await asyncpg.connect(url)
    try:
        facts = {}
        for setting in ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "shared_buffers"):
            facts[setting] = await connection.fetchval(f"SHOW {setting}")
        return facts
    finally:
        await connection.close()


async def seed(url: str, people: int, seed_value: int) -> tuple[Any, dict[str, tuple[str, str]]]:
    """Migrate, then load the synthetic county (benchmarks/county.py), which ends with ANALYZE."""
    county = build_county(seed_value, people=people)
    connection = await asyncpg.connect(url)
    try:
        await db.migrate(connection)
        keys = await load_county(connection, county, pepper=PEPPER, key_encryption_key=KEY_ENCRYPTION_KEY)
        # Foreign-key checks on fresh tables run as sequential scans until analysed.
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return county, keys


async def analyze(url: str) -> None:
    await _execute(url, "ANALYZE")


async def invariant_violations(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        return [f"{violation.rule}: {violation.detail}" for violation in await check_invariants(connection)]
    finally:
        await connection.close()


async def settled_count(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM settlements"))
    finally:
        await connection.close()


# Every table of the public schema, whatever the migrations call them: its bytes on disk (heap, indexes,
# TOAST, free space and visibility maps) and its row counters. Partitions are tables of their own here; a
# partitioned parent has no storage and no counters, so nothing is counted twice.
STORAGE_SNAPSHOT = """
    SELECT c.relname AS "table", pg_total_relation_size(c.oid) AS bytes,
           coalesce(s.n_tup_ins, 0) AS inserted, coalesce(s.n_tup_upd, 0) AS updated,
           coalesce(s.n_tup_del, 0) AS deleted
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'm')
"""
ROW_COUNTERS = ("inserted", "updated", "deleted")


async def storage_snapshot(connection: asyncpg.Connection) -> dict[str, dict[str, int]]:
    """Bytes and row counters of every table of the public schema, by table name."""
    rows = await connection.fetch(STORAGE_SNAPSHOT)
    return {
        row["table"]: {"bytes": int(row["bytes"]), **{name: int(row[name]) for name in ROW_COUNTERS}} for row in rows
    }


async def quiet_storage_snapshot(
    url: str, *, quiet: float = 2.0, timeout: float = 30.0, interval: float = 0.5
) -> tuple[dict[str, dict[str, int]], int, float]:
    """A storage snapshot once the row counters have stopped moving, the settlements stored, the seconds waited.

    PostgreSQL (15 and later) keeps a session's counters to itself and publishes them lazily: at most once
    a second while busy, within 10 s once idle, and when the session ends; pg_stat_force_next_flush() works
    only on the calling session's own. So this is read from a session of its own, when no writer should be
    left, and read again until the counters have stayed the same for ``quiet`` seconds (each read is its own
    transaction, so it sees what has been published since), for at most ``timeout`` seconds."""
    connection = await asyncpg.connect(url)
    try:
        started = time.monotonic()
        snapshot = await storage_snapshot(connection)
        unchanged_since = time.monotonic()
        while time.monotonic() - unchanged_since < quiet and time.monotonic() - started < timeout:
            await asyncio.sleep(interval)
            latest = await storage_snapshot(connection)
            counters = {name: [table[key] for key in ROW_COUNTERS] for name, table in latest.items()}
            if counters != {name: [table[key] for key in ROW_COUNTERS] for name, table in snapshot.items()}:
                unchanged_since = time.monotonic()
            snapshot = latest
        settlements = int(await connection.fetchval("SELECT count(*) FROM settlements"))
        return snapshot, settlements, round(time.monotonic() - started, 1)
    finally:
        await connection.close()


def storage_per_settlement(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], settlements: int
) -> dict[str, Any]:
    """What the settlements stored between two snapshots cost: bytes and rows written, per settlement, in all
    and by table (largest first; tables that did not change are left out). A table missing from one snapshot
    counts as empty there."""
    if settlements <= 0:
        raise RuntimeError(f"no settlement was stored between the snapshots ({settlements})")
    empty = {"bytes": 0, **dict.fromkeys(ROW_COUNTERS, 0)}
    tables = []
    for name in sorted(set(before) | set(after)):
        change = {key: after.get(name, empty)[key] - before.get(name, empty)[key] for key in empty}
        if any(change.values()):
            per = {f"{key}_per_settlement": value / settlements for key, value in change.items()}
            tables.append({"table": name, **change, **per})
    tables.sort(key=lambda row: (-row["bytes"], row["table"]))
    totals = {key: sum(row[key] for row in tables) for key in empty}
    return {
        "settlements": settlements,
        **totals,
        "bytes_per_settlement": totals["bytes"] / settlements,
        "rows_per_settlement": sum(totals[key] for key in ROW_COUNTERS) / settlements,
        **{f"{key}_per_settlement": totals[key] / settlements for key in ROW_COUNTERS},
        "tables": tables,
    }


async def prepare_pgbench(
    gateway_url: str, pgbench_url: str, stand_in_records: list[tuple[bytes, bytes, bytes]], samples: int = 500
) -> dict[str, Any]:
    """Create the numbered tables of benchmarks/pgbench_setup.sql in pgbench's copy and fill bench_records with
    the record, request fingerprint and nonce of real settlements from the gateway's run (a random sample), or,
    if the gateway settled nothing, with ``stand_in_records``.

    If the sample cannot be read, or the setup cannot run, because a table or a column it names is gone, the
    database ceiling is skipped (Skipped), not failed."""
    source = await asyncpg.connect(gateway_url)
    try:
        try:
            # Compressed records only (rows migrated from before 0010 hold JSON), of signed requests.
            rows = await source.fetch(
                """SELECT record, request_hash, nonce FROM settlements
                   WHERE get_byte(record, 0) = 1 AND request_hash IS NOT NULL AND nonce IS NOT NULL
                   ORDER BY random() LIMIT $1""",
                samples,
            )
            # The policy in force today, as the gateway recorded it at start-up (pgbench's copy predates that).
            policy = await source.fetchrow(
                "SELECT policy_id, effective_from, source, document FROM policy_versions"
                " WHERE effective_from <= current_date ORDER BY effective_from DESC LIMIT 1"
            )
        except SCHEMA_MISMATCH as error:
            raise Skipped(f"pgbench scripts do not match the schema ({error})") from None
    finally:
        await source.close()
    if policy is None:  # the gateway did not run: record the default policy file the way it would
        path = ROOT / "policies" / "default.toml"
        parsed = load_policy_file(path)
        policy = (parsed.id, parsed.effective_from, str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
    records = [(bytes(row["record"]), bytes(row["request_hash"]), bytes(row["nonce"])) for row in rows]
    real = bool(records)
    if not records:
        records = list(stand_in_records)
    if not records:
        raise RuntimeError("no settlement record to write: the gateway settled nothing and there is no stand-in")
    target = await asyncpg.connect(pgbench_url)
    try:
        try:
            await target.execute(pgbench_scripts.SETUP_SQL.read_text(encoding="utf-8"))
        except SCHEMA_MISMATCH as error:
            raise Skipped(f"pgbench scripts do not match the schema ({error})") from None
        await target.execute(
            "INSERT INTO policy_versions (policy_id, effective_from, source, document) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING",
            *policy,
        )
        await target.executemany(
            "INSERT INTO bench_records (n, record, request_hash, nonce) VALUES ($1, $2, $3, $4)",
            [(index, *record) for index, record in enumerate(records, start=1)],
        )
        people = int(await target.fetchval("SELECT count(*) FROM bench_people"))
        terminals = int(await target.fetchval("SELECT count(*) FROM bench_terminals"))
        await target.execute("ANALYZE")
    finally:
        await target.close()
    sizes = sorted(len(record) for record, _, _ in records)
    return {
        "people": people,
        "terminals": terminals,
        "records": len(records),
        "records_from_gateway": real,
        "median_record_bytes": sizes[len(sizes) // 2],
        "policy": policy[0],
    }


def stand_in_records(county: Any, bodies: list[dict[str, Any]]) -> list[tuple[bytes, bytes, bytes]]:
    """Records for bench_records when the gateway settled nothing (``--only database``): the bills settled by the
    engine under the default policy for an insured person with no accumulators, encoded as the gateway stores
    them, with random fingerprints and nonces."""
    policy = load_policy_file(ROOT / "policies" / "default.toml")
    levels = {clinic.clinic_id: clinic.level for clinic in county.clinics}
    records = []
    for body in bodies:
        items = tuple(msgspec.convert(item, LineItem) for item in body["items"])
        bill = Bill(
            clinic_level=levels[body["clinic_id"]],
            visit_type=body["visit_type"],
            service_date=dt.date.fromisoformat(body["service_date"]),
            items=items,
        )
        if bill.visit_type == "inpatient" and not policy.offers_inpatient(bill.clinic_level):
            continue
        result = settle(bill, PersonStatus(insured=True), Accumulators(), policy)
        record = encode_record(Record(identity.mask(body["person_id"]), items, result))
        records.append((record, os.urandom(16), os.urandom(16)))
    return records


def pgbench_schema_mismatch(output: str) -> str | None:
    """PostgreSQL's words, when pgbench stopped because its script names a table or column that is gone."""
    found = PGBENCH_SCHEMA_MISMATCH.search(output)
    return found.group(1) if found else None


def run_pgbench(
    url: str,
    script: Path,
    *,
    label: str,
    clients: int,
    threads: int,
    duration: int,
    variables: dict[str, object],
    meter: CpuMeter,
) -> dict[str, Any]:
    pgbench = tool("pgbench", pgserver_binary("pgbench"))
    command = [pgbench, "-n", "-M", "prepared", "-c", str(clients), "-j", str(threads), "-T", str(duration)]
    for name, value in variables.items():
        command += ["-D", f"{name}={value}"]
    command += ["-f", str(script), url]
    meter.start()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120)
    cpu = meter.stop("pgbench")
    output = completed.stdout + completed.stderr

    def number(pattern: str) -> float | None:
        found = re.search(pattern, output)
        return float(found.group(1)) if found else None

    tps = number(r"tps = ([\d.]+) \(without initial connection time\)")
    transactions = number(r"number of transactions actually processed: (\d+)")
    failed = number(r"number of failed transactions: (\d+)")
    result = {
        "clients": clients,
        "threads": threads,
        "tps": tps,
        "latency_ms": number(r"latency average = ([\d.]+) ms"),
        "transactions": transactions,
        "failed": int(failed or 0),
        "cpu_us_per_transaction": per_operation_us(cpu, transactions or 0),
        "exit_code": completed.returncode,
        "command": f"pgbench -n -M prepared -c {clients} -j {threads} -T {duration} -f <{label}>",
    }
    mismatch = pgbench_schema_mismatch(output)
    if completed.returncode != 0 and mismatch:
        raise Skipped(f"pgbench scripts do not match the schema ({mismatch})")
    if completed.returncode != 0 or tps is None:
        raise RuntimeError(f"pgbench failed (exit {completed.returncode}): {output.strip()[-800:]}")
    return result


# ---------------------------------------------------------------- measurements


def measure_engine() -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "engine_bench.py"), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    if completed.returncode not in (0, 1):  # 1 means it ran and missed its target
        raise RuntimeError(f"engine_bench.py failed: {completed.stderr.strip()[-500:]}")
    document = json.loads(completed.stdout)
    target = document["target"]
    return {"scenario": target["scenario"], "median_us": target["median_us"], "scenarios": document["scenarios"]}


def measure_http(processes: Processes, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    port = free_port()
    log_file = open(workdir / "bare_http.log", "wb")  # noqa: SIM115 - closed in finally
    process = processes.start(
        [sys.executable, str(BENCHMARKS / "bare_http.py"), "--port", str(port)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    meter = CpuMeter()
    meter.watch("server", process.pid)
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_http(base, process, timeout=30, what="bare_http.py")
        meter.start()
        result = run_wrk(
            base,
            connections=args.http_connections,
            threads=1,
            duration=args.duration,
            script=BENCHMARKS / "wrk" / "report.lua",
            script_args=[],
        )
        cpu = meter.stop("wrk")
    finally:
        processes.stop(process)
        log_file.close()
    loop = (workdir / "bare_http.log").read_text(errors="replace")
    errors = sum(result["socket_errors"].values()) + result["wrk_status_errors"]
    return {
        "requests_per_second": result["requests"] / (result["duration_us"] / 1e6),
        "requests": result["requests"],
        "errors": errors,
        "latency_us": result["latency_us"],
        "loop": "uvloop" if "uvloop" in loop else "asyncio",
        "cpu_us_per_request": per_operation_us(cpu, result["requests"]),
        "connections": args.http_connections,
        "command": result["command"],
    }


def gateway_command(args: argparse.Namespace) -> list[str]:
    medsettle = Path(sys.executable).parent / "medsettle"
    command = [str(medsettle), "serve"] if medsettle.exists() else [sys.executable, "-m", "gateway.cli", "serve"]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    return command


def gateway_environment(args: argparse.Namespace, database_url: str, port: int, data_dir: Path) -> dict[str, str]:
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MEDSETTLE_") and name not in ("DATABASE_URL", "REPORTS_DATABASE_URL")
    }
    # No rate limit (load.gateway_environment): it would cap each terminal at 50/s, and this measures the gateway.
    environment = load.gateway_environment(
        inherited,
        database_url=database_url,
        port=port,
        pepper=PEPPER.decode(),
        kek=KEY_ENCRYPTION_KEY,
        data_dir=data_dir,
    )
    if args.pool_max is not None:
        environment["MEDSETTLE_POOL_MAX"] = str(args.pool_max)
    if args.batch_max is not None:
        environment["MEDSETTLE_SETTLE_BATCH_MAX"] = str(args.batch_max)
    return environment


def settle_run(
    base: str,
    *,
    connections: int,
    threads: int,
    duration: int,
    count: int,
    workdir: Path,
    stream: Iterator[tuple[str, dict[str, Any]]],
    keys: dict[str, tuple[str, str]],
    label: str,
    meter: CpuMeter,
    stop_when: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Sign ``count`` requests now, replay them with wrk, and summarise: throughput, latency, failures."""
    prefix = workdir / f"requests-{label}"
    host = urllib.parse.urlsplit(base).netloc
    started = time.monotonic()
    size = write_signed_requests(prefix, count, threads, stream, keys, host)
    signing_seconds = time.monotonic() - started
    try:
        meter.start()
        result = run_wrk(
            f"{base}{SETTLE_PATH}",
            connections=connections,
            threads=threads,
            duration=duration,
            script=BENCHMARKS / "wrk" / "settle.lua",
            script_args=[str(prefix)],
            stop_when=stop_when,
        )
    finally:
        for index in range(threads):
            Path(f"{prefix}.{index}").unlink(missing_ok=True)
    cpu = meter.stop("wrk")
    rate, window = steady_rate(result)
    elapsed = result["duration_us"] / 1e6
    non_201 = {status: count for status, count in result["non_201"].items() if count}
    socket_errors = {name: count for name, count in result["socket_errors"].items() if count}
    return {
        "connections": connections,
        "threads": threads,
        "duration": duration,
        "settlements_per_second": rate,
        "steady_seconds": window,
        "overall_per_second": result["created"] / elapsed if elapsed > 0 else 0.0,
        "created": result["created"],
        "sent": result["sent"],
        "prepared": count,
        "prepared_bytes": size,
        "signing_seconds": round(signing_seconds, 1),
        "exhausted": result["exhausted_threads"] > 0,
        "non_201": non_201,
        "socket_errors": socket_errors,
        "errors": sum(non_201.values()) + sum(socket_errors.values()),
        "p50_ms": result["latency_us"]["p50"] / 1000,
        "p90_ms": result["latency_us"]["p90"] / 1000,
        "p99_ms": result["latency_us"]["p99"] / 1000,
        "p999_ms": result["latency_us"]["p999"] / 1000,
        "max_ms": result["latency_us"]["max"] / 1000,
        "cpu_us_per_settlement": per_operation_us(cpu, result["created"]),
        "per_second": result["per_second"],
        "command": result["command"],
    }


class GatewayProcess:
    """``medsettle serve`` on the gateway's database, from ready to stopped (``with``), with a CPU meter
    watching it and PostgreSQL. Its log is kept in the work folder under ``label``."""

    def __init__(
        self, processes: Processes, args: argparse.Namespace, workdir: Path, database: Database, label: str
    ) -> None:
        self.processes, self.args, self.database = processes, args, database
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = workdir / f"{label}-data"
        self.log_path = workdir / f"{label}.log"
        self.meter = CpuMeter()
        self.exit_code: int | None = None

    def __enter__(self) -> GatewayProcess:
        self.data_dir.mkdir(exist_ok=True)
        self.log_file = open(self.log_path, "wb")  # closed in __exit__
        self.process = self.processes.start(
            gateway_command(self.args),
            env=gateway_environment(self.args, self.database.gateway_url, self.port, self.data_dir),
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.meter.watch("gateway", self.process.pid)
        self.meter.watch("postgres", self.database.postmaster_pid())
        try:
            wait_http(f"{self.base}/readyz", self.process, timeout=90, what="medsettle serve")
        except RuntimeError as error:
            self.__exit__()
            last = " | ".join(self.log_lines()[-3:])
            raise RuntimeError(f"{error}; its log ends: {last[-600:]}") from None
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exception: object) -> None:
        self.exit_code = self.processes.stop(self.process)
        self.log_file.close()

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").strip().splitlines()


def measure_gateway(
    processes: Processes,
    args: argparse.Namespace,
    workdir: Path,
    database: Database,
    stream: Iterator[tuple[str, dict[str, Any]]],
    keys: dict[str, tuple[str, str]],
) -> dict[str, Any]:
    runs: dict[int, dict[str, Any]] = {}
    warmup: dict[str, Any] = {}
    with GatewayProcess(processes, args, workdir, database, "gateway") as gateway:
        base, meter = gateway.base, gateway.meter
        # The gateway recorded its policy versions at start-up: analyse again so nothing plans on stale stats.
        asyncio.run(analyze(database.gateway_url))
        asyncio.run(checkpoint(database.gateway_url))
        log(f"gateway warm-up: {args.warmup} s at 16 terminals")
        warmup = settle_run(
            base,
            connections=16,
            threads=1,
            duration=args.warmup,
            count=args.warmup * min(args.max_rate, 5_000),
            workdir=workdir,
            stream=stream,
            keys=keys,
            label="warmup",
            meter=meter,
        )
        # Enough requests for the whole run: three times the warm-up's pace (more terminals rarely triple it),
        # at most --max-rate a second. If a thread runs out anyway, it stops and the steady window ends there.
        pace = min(args.max_rate, max(2_000, int(3 * warmup["settlements_per_second"])))
        for connections in args.connections:
            threads = min(args.wrk_threads, connections)
            log(f"gateway: {args.duration} s at {connections} terminals (wrk -t{threads}), signing {pace}/s of bills")
            # The run starts on tables the warm-up has just filled from empty, within autovacuum's first minute:
            # analyse them, or the gateway's connections keep the plans they made while settlements and accumulators
            # were empty, which read both tables whole at every write (benchmarks/RESULTS.md, 2026-12-03, issue 14).
            asyncio.run(analyze(database.gateway_url))
            asyncio.run(checkpoint(database.gateway_url))
            runs[connections] = settle_run(
                base,
                connections=connections,
                threads=threads,
                duration=args.duration,
                count=args.duration * pace + connections,
                workdir=workdir,
                stream=stream,
                keys=keys,
                label=f"c{connections}",
                meter=meter,
            )
            log(
                f"  {runs[connections]['settlements_per_second']:,.0f} settlements/s, "
                f"p99 {runs[connections]['p99_ms']:.1f} ms, errors {runs[connections]['errors']}"
            )
    lines = gateway.log_lines()
    error_lines = [line for line in lines if '"error"' in line]
    log("checking invariants (adapters.check.check_invariants)")
    violations = asyncio.run(invariant_violations(database.gateway_url))
    stored = asyncio.run(settled_count(database.gateway_url))
    # Every 201 is a promise that the settlement is stored (requests cut off by wrk's stop may be stored unanswered).
    created = sum(run["created"] for run in [warmup, *runs.values()] if run)
    return {
        "runs": runs,
        "warmup": warmup,
        "exit_code": gateway.exit_code,
        "log_tail": lines[-20:],
        "log_error_lines": len(error_lines),
        "log_errors": error_lines[:20],
        "settlements_in_database": stored,
        "created_not_stored": max(0, created - stored),
        "violations": violations,
        "pool_max": args.pool_max if args.pool_max is not None else "12 (gateway default)",  # per worker
        "workers": args.workers if args.workers is not None else "1 (not passed)",
        "command": " ".join(["medsettle", *gateway_command(args)[1:]]),
    }


def measure_storage(
    processes: Processes,
    args: argparse.Namespace,
    workdir: Path,
    database: Database,
    stream: Iterator[tuple[str, dict[str, Any]]],
    keys: dict[str, tuple[str, str]],
) -> dict[str, Any]:
    """Settle ``--storage-settlements`` bills through a gateway of its own at 64 terminals (wrk and
    settle.lua, as the gateway runs), and divide what the public schema's tables grew by the settlements
    stored. The snapshots are taken while no gateway is running (so every session's counters are published),
    without VACUUM or CHECKPOINT: what a live system holds."""
    url = database.gateway_url
    before, settled_before, waited_before = asyncio.run(quiet_storage_snapshot(url, timeout=STATS_TIMEOUT))
    wanted = args.storage_settlements
    rounds: list[dict[str, Any]] = []
    started = time.monotonic()
    loop = asyncio.new_event_loop()
    counter = loop.run_until_complete(asyncpg.connect(url))
    try:

        def stored() -> int:
            return int(loop.run_until_complete(counter.fetchval("SELECT count(*) FROM settlements"))) - settled_before

        with GatewayProcess(processes, args, workdir, database, "storage") as gateway:
            asyncio.run(analyze(url))  # the gateway recorded its policy versions at start-up
            rate = 0.0
            while (done := stored()) < wanted:
                # Signatures are good for 300 s and made just before each round: a round is about two minutes'
                # worth at the pace of the last one (20,000 to start with). wrk is stopped (SIGINT) once they
                # are stored, or when nothing more has been stored for 10 s. It must not run out first: when a
                # wrk thread runs out it stops, and drops the requests its other connections have in flight.
                # So a round signs a few seconds' worth more than it needs, and may store some of them before
                # it is stopped: the figures divide by the settlements stored, not by those asked for.
                count = min(wanted - done, max(5_000, int(rate * 120)) if rate else 20_000)
                goal = done + count
                spare = max(2_000, int(rate * 3)) + STORAGE_TERMINALS
                progress = {"count": done, "since": time.monotonic()}

                def finished(goal: int = goal, progress: dict[str, float] = progress) -> bool:
                    now_stored = stored()
                    if now_stored != progress["count"]:
                        progress["count"], progress["since"] = now_stored, time.monotonic()
                    return now_stored >= goal or time.monotonic() - progress["since"] > 10

                log(f"storage: settling {count:,} bills at {STORAGE_TERMINALS} terminals ({done:,} of {wanted:,})")
                run = settle_run(
                    gateway.base,
                    connections=STORAGE_TERMINALS,
                    threads=min(args.wrk_threads, STORAGE_TERMINALS),
                    duration=240,
                    count=count + spare,
                    workdir=workdir,
                    stream=stream,
                    keys=keys,
                    label=f"storage-{len(rounds)}",
                    meter=gateway.meter,
                    stop_when=finished,
                )
                rounds.append(run)
                if stored() <= done:
                    raise RuntimeError(f"a round of {count:,} bills stored nothing (errors: {run['errors']})")
                rate = run["overall_per_second"]
    finally:
        loop.run_until_complete(counter.close())
        loop.close()
    after, settled_after, waited_after = asyncio.run(quiet_storage_snapshot(url, timeout=STATS_TIMEOUT))
    figures = storage_per_settlement(before, after, settled_after - settled_before)
    created = sum(run["created"] for run in rounds)
    cpu: dict[str, float] = {}
    for run in rounds:
        for name, microseconds in run["cpu_us_per_settlement"].items():
            cpu[name] = cpu.get(name, 0.0) + microseconds * run["created"] / created
    error_lines = [line for line in gateway.log_lines() if '"error"' in line]
    log(
        f"  {figures['bytes_per_settlement']:,.0f} bytes and {figures['rows_per_settlement']:.2f} rows written"
        f" per settlement, over {figures['settlements']:,} settlements"
    )
    return {
        "terminals": STORAGE_TERMINALS,
        "requested": wanted,
        **figures,
        "created": created,
        "errors": sum(run["errors"] for run in rounds),
        "seconds": round(time.monotonic() - started, 1),
        "stats_waited_seconds": {"before": waited_before, "after": waited_after},
        "stats_settled": max(waited_before, waited_after) < STATS_TIMEOUT,
        "cpu_us_per_settlement": {name: round(value, 1) for name, value in cpu.items()},
        "rounds": rounds,
        "exit_code": gateway.exit_code,
        "log_error_lines": len(error_lines),
        "log_errors": error_lines[:20],
    }


def measure_database(
    args: argparse.Namespace, database: Database, workdir: Path, stand_ins: list[tuple[bytes, bytes, bytes]]
) -> dict[str, Any]:
    """pgbench running the gateway's own settle statements (benchmarks/pgbench_scripts.py): the write alone at
    each ``--pgbench-clients`` (the best is the ceiling), then the read and the write at the best count."""
    try:
        scripts = {"write": pgbench_scripts.write_script(), "read-write": pgbench_scripts.read_write_script()}
    except pgbench_scripts.ScriptMismatch as error:
        raise Skipped(f"pgbench scripts do not match the settle statements ({error})") from None
    prepared = asyncio.run(prepare_pgbench(database.gateway_url, database.pgbench_url, stand_ins))
    paths = {}
    for name, text in scripts.items():
        paths[name] = workdir / f"pgbench-{name}.sql"
        paths[name].write_text(text, encoding="utf-8")
    variables = {
        "people": prepared["people"],
        "terminals": prepared["terminals"],
        "records": prepared["records"],
        "year": dt.date.today().year,
        "policy": prepared["policy"],
    }
    meter = CpuMeter()
    meter.watch("postgres", database.postmaster_pid())

    def run(name: str, clients: int) -> dict[str, Any]:
        asyncio.run(checkpoint(database.pgbench_url))
        before = asyncio.run(settled_count(database.pgbench_url))
        result = run_pgbench(
            database.pgbench_url,
            paths[name],
            label=f"benchmarks/pgbench_scripts.py {name}",
            clients=clients,
            threads=min(clients, args.pgbench_threads),
            duration=args.duration,
            variables=variables,
            meter=meter,
        )
        # A transaction whose accumulator row another client moved (or created) first writes nothing, as the
        # gateway's write would not (it then decides again under the row lock): rare, with a random person each.
        result["settlements_written"] = asyncio.run(settled_count(database.pgbench_url)) - before
        log(f"  {result['tps']:,.0f} TPS, {result['settlements_written']:,} of {result['transactions']:,.0f} wrote")
        return result

    runs = []
    for clients in args.pgbench_clients:
        log(f"pgbench: {args.duration} s, {clients} clients, the settlement write (WRITE_SETTLEMENTS)")
        runs.append(run("write", clients))
    best = max(runs, key=lambda run: run["tps"])
    read_write = None
    if not args.no_read:
        log(f"pgbench: {args.duration} s, {best['clients']} clients, the read (READ_FOR_SETTLE), then the write")
        read_write = run("read-write", best["clients"])
    return {"prepared": prepared, "runs": runs, "best": best, "read_write": read_write}


# ---------------------------------------------------------------- report


def machine_facts(server: dict[str, str], database_kind: str) -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        import uvloop  # noqa: F401

        uvloop_installed = True
    except ImportError:
        uvloop_installed = False
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "postgresql": server.get("server_version", "unknown"),
        "postgresql_settings": {key: value for key, value in server.items() if key != "server_version"},
        "database": database_kind,
        "python": platform.python_version(),
        "uvloop": uvloop_installed,
        "wrk": version_of([tool("wrk"), "-v"]).split(" Copyright")[0],
        "pgbench": version_of([tool("pgbench", pgserver_binary("pgbench")), "--version"]),
        "platform": platform.platform(),
    }


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "NOT MET")


def target_figures(results: dict[str, Any]) -> dict[str, Any]:
    """The figures the targets judge, as numbers (None when not measured), for the JSON document."""
    gateway, storage = results.get("gateway"), results.get("storage")
    runs = gateway["runs"] if gateway else {}
    cpu = None
    run = runs.get(TARGET_CPU_TERMINALS)
    if run and "gateway" in run["cpu_us_per_settlement"] and "postgres" in run["cpu_us_per_settlement"]:
        cpu = round(run["cpu_us_per_settlement"]["gateway"] + run["cpu_us_per_settlement"]["postgres"], 1)
    return {
        "bytes_per_settlement": storage["bytes_per_settlement"] if storage else None,
        "rows_per_settlement": storage["rows_per_settlement"] if storage else None,
        f"cpu_us_per_settlement_at_{TARGET_CPU_TERMINALS}": cpu,
        "p99_ms": {connections: run["p99_ms"] for connections, run in sorted(runs.items())},
    }


def build_report(results: dict[str, Any], args: argparse.Namespace) -> tuple[list[list[str]], list[list[str]], bool]:
    """(figures rows, target rows, every target met). A skipped measurement is shown as such and its targets
    as n/a; a failed one as FAILED, with its targets not met."""
    figures: list[list[str]] = []
    targets: list[list[str]] = []

    def absent(name: str, label: str) -> None:
        if name in results["skip_notes"]:
            figures.append([label, "skipped", results["skip_notes"][name]])
        elif name in results["skipped"]:
            figures.append([label, "skipped", f"--only {','.join(sorted(args.only))}"])
        else:
            figures.append([label, "FAILED", results["failures"].get(name, "")])

    http = results.get("http")
    if http:
        figures.append(
            [
                f"HTTP ceiling: bare aiohttp ({http['loop']}), small JSON",
                f"{http['requests_per_second']:,.0f} req/s",
                f"wrk -t1 -c{http['connections']} -d{args.duration}s, p99 {http['latency_us']['p99'] / 1000:.1f} ms,"
                f" errors {http['errors']}",
            ]
        )
    else:
        absent("http", "HTTP ceiling: bare aiohttp, small JSON")

    database = results.get("database")
    if database:
        runs = ", ".join(f"{run['clients']}: {run['tps']:,.0f}" for run in database["runs"])
        best = database["best"]
        prepared = database["prepared"]
        records = (
            f"the gateway's own records (median {prepared['median_record_bytes']:,} B)"
            if prepared["records_from_gateway"]
            else f"stand-in records (median {prepared['median_record_bytes']:,} B)"
        )
        figures.append(
            [
                "DB ceiling: pgbench settlement write",
                f"{best['tps']:,.0f} TPS",
                f"WRITE_SETTLEMENTS alone, autocommit; best at {best['clients']} clients (-j{best['threads']}) of"
                f" {runs}; avg latency {best['latency_ms']:.1f} ms; {records}",
            ]
        )
        if database["read_write"]:
            read_write = database["read_write"]
            figures.append(
                [
                    "  read, then write (2 round trips)",
                    f"{read_write['tps']:,.0f} TPS",
                    f"READ_FOR_SETTLE, then WRITE_SETTLEMENTS; {read_write['clients']} clients"
                    f" (-j{read_write['threads']}); avg latency {read_write['latency_ms']:.1f} ms",
                ]
            )
    else:
        absent("database", "DB ceiling: pgbench settlement write")

    gateway = results.get("gateway")
    gateway_best = None
    if gateway and gateway["runs"]:
        for connections, run in sorted(gateway["runs"].items()):
            exhausted = "; requests ran out, window cut" if run["exhausted"] else ""
            figures.append(
                [
                    f"gateway settle, {connections} terminals",
                    f"{run['settlements_per_second']:,.0f} /s",
                    f"p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms; wrk -t{run['threads']} -c{connections},"
                    f" closed loop, no think time{exhausted}",
                ]
            )
        gateway_best = max(gateway["runs"].values(), key=lambda run: run["settlements_per_second"])
    else:
        absent("gateway", "gateway settle")

    storage = results.get("storage")
    if storage:
        notes = [f"{storage['settlements']:,} settlements at {storage['terminals']} terminals"]
        if storage["errors"]:
            notes.append(f"{storage['errors']} errors")
        figures.append(
            [
                "storage: bytes on disk per settlement",
                f"{storage['bytes_per_settlement']:,.0f} B",
                f"public schema, indexes and TOAST included, no VACUUM; {'; '.join(notes)}",
            ]
        )
        stale = "" if storage["stats_settled"] else f"; row counters still moving after {STATS_TIMEOUT:g} s"
        figures.append(
            [
                "storage: rows written per settlement",
                f"{storage['rows_per_settlement']:.2f}",
                f"{storage['inserted_per_settlement']:.2f} inserted, {storage['updated_per_settlement']:.2f} updated,"
                f" {storage['deleted_per_settlement']:.2f} deleted (pg_stat_user_tables){stale}",
            ]
        )
    else:
        absent("storage", "storage: bytes on disk per settlement")

    engine = results.get("engine")
    if engine:
        figures.append([f"engine alone: {engine['scenario']}, 20 lines", f"{engine['median_us']:.1f} µs", "median"])
    else:
        absent("engine", "engine alone: 20-line inpatient bill along the six-step chain")

    all_met = True

    def target(name: str, value: str, wanted: str, met: bool | None, needs: tuple[str, ...] = ()) -> None:
        nonlocal all_met
        if met is None and not any(need in results["skipped"] for need in needs):
            met = False  # a measurement it needs failed
        if met is False:
            all_met = False
        targets.append([name, value, wanted, verdict(met)])

    wanted_ratio = f">= {TARGET_DB_RATIO:g} (stretch >= {STRETCH_DB_RATIO:g})"
    if gateway_best and database:
        ratio = gateway_best["settlements_per_second"] / database["best"]["tps"]
        target(
            f"gateway / DB ceiling (gateway at {gateway_best['connections']} terminals)",
            f"{ratio:.2f}",
            wanted_ratio,
            ratio >= TARGET_DB_RATIO,
        )
        if ratio >= STRETCH_DB_RATIO:
            targets[-1][3] += ", stretch met"
    else:
        target("gateway / DB ceiling", "-", wanted_ratio, None, ("gateway", "database"))
    for connections, limit in TARGET_P99_MS.items():
        run = gateway["runs"].get(connections) if gateway else None
        name = f"p99 at {connections} terminals"
        if run:
            target(name, f"{run['p99_ms']:.1f} ms", f"<= {limit:g} ms", run["p99_ms"] <= limit)
        elif connections in args.connections:
            target(name, "-", f"<= {limit:g} ms", None, ("gateway",))
        else:
            targets.append([name, "-", f"<= {limit:g} ms", "n/a (not in --connections)"])
    judged = target_figures(results)
    name = f"total CPU per settlement at {TARGET_CPU_TERMINALS} terminals (gateway + PostgreSQL)"
    wanted = f"<= {TARGET_CPU_US:g} µs"
    cpu = judged[f"cpu_us_per_settlement_at_{TARGET_CPU_TERMINALS}"]
    if cpu is not None:
        target(name, f"{cpu:,.0f} µs", wanted, cpu <= TARGET_CPU_US)
    elif gateway and TARGET_CPU_TERMINALS in gateway["runs"]:
        why = "PostgreSQL's processes not visible" if psutil is not None else "psutil not installed"
        targets.append([name, "-", wanted, f"n/a ({why})"])
    elif TARGET_CPU_TERMINALS in args.connections:
        target(name, "-", wanted, None, ("gateway",))
    else:
        targets.append([name, "-", wanted, "n/a (not in --connections)"])
    wanted = f"<= {TARGET_BYTES_PER_SETTLEMENT} B"
    if judged["bytes_per_settlement"] is not None:
        size = judged["bytes_per_settlement"]
        target("bytes per settlement", f"{size:,.0f} B", wanted, size <= TARGET_BYTES_PER_SETTLEMENT)
    else:
        target("bytes per settlement", "-", wanted, None, ("storage",))
    if engine:
        met = engine["median_us"] <= TARGET_ENGINE_US
        target("engine alone", f"{engine['median_us']:.1f} µs", f"<= {TARGET_ENGINE_US:g} µs", met)
    else:
        target("engine alone", "-", f"<= {TARGET_ENGINE_US:g} µs", None, ("engine",))
    if gateway_best and http:
        ratio = gateway_best["settlements_per_second"] / http["requests_per_second"]
        targets.append(["gateway / HTTP ceiling", f"{ratio:.2f}", "(for scale)", "-"])
    storage = results.get("storage")
    if gateway or storage:
        all_runs: list[dict[str, Any]] = [gateway["warmup"], *gateway["runs"].values()] if gateway else []
        all_runs = [run for run in [*all_runs, *(storage["rounds"] if storage else [])] if run]
        errors = sum(run["errors"] for run in all_runs)
        detail: dict[str, int] = {}
        for run in all_runs:
            for kind, count in {**run["non_201"], **run["socket_errors"]}.items():
                detail[str(kind)] = detail.get(str(kind), 0) + count
        shown = f"{errors}" + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(detail.items()))})" if detail else "")
        target("errors: non-201 answers, socket errors", shown, "0", errors == 0)
    else:
        target("errors: non-201 answers, socket errors", "-", "0", None, ("gateway", "storage"))
    if gateway:
        problems = len(gateway["violations"]) + gateway["created_not_stored"]
        shown = f"{len(gateway['violations'])}"
        if gateway["created_not_stored"]:
            shown += f" + {gateway['created_not_stored']} answered 201 but not stored"
        target("invariant violations (medsettle check)", shown, "0", problems == 0)
        if gateway["log_error_lines"]:
            count = gateway["log_error_lines"]
            targets.append(["gateway log lines mentioning an error", str(count), "(see --json: log_errors)", "-"])
    else:
        target("invariant violations (medsettle check)", "-", "0", None, ("gateway",))
    if storage and storage["log_error_lines"]:
        count = storage["log_error_lines"]
        targets.append(["storage gateway log lines mentioning an error", str(count), "(see --json: storage)", "-"])
    return figures, targets, all_met


def cpu_rows(results: dict[str, Any]) -> list[list[str]]:
    """µs of CPU per operation: the serving process, PostgreSQL (all its processes), the load generator."""

    def row(label: str, cpu: dict[str, float], server: str, generator: str) -> list[str]:
        cells = [cpu.get(server), cpu.get("postgres"), cpu.get(generator)]
        total = sum(cell for cell in cells if cell is not None)
        return [label, *("-" if cell is None else f"{cell:,.0f}" for cell in cells), f"{total:,.0f}"]

    rows = []
    if results.get("http") and results["http"]["cpu_us_per_request"]:
        rows.append(row("bare HTTP, per request", results["http"]["cpu_us_per_request"], "server", "wrk"))
    database = results.get("database")
    if database:
        for run in database["runs"]:
            if run["cpu_us_per_transaction"]:
                label = f"pgbench write, {run['clients']} clients, per transaction"
                rows.append(row(label, run["cpu_us_per_transaction"], "-", "pgbench"))
        read_write = database.get("read_write")
        if read_write and read_write["cpu_us_per_transaction"]:
            label = f"pgbench read + write, {read_write['clients']} clients"
            rows.append(row(label, read_write["cpu_us_per_transaction"], "-", "pgbench"))
    gateway = results.get("gateway")
    if gateway:
        for connections, run in sorted(gateway["runs"].items()):
            if run["cpu_us_per_settlement"]:
                label = f"gateway, {connections} terminals, per settlement"
                rows.append(row(label, run["cpu_us_per_settlement"], "gateway", "wrk"))
    return rows


def storage_rows(results: dict[str, Any]) -> list[list[str]]:
    """Bytes and rows written per settlement, by table (those that changed, largest first), then all of them."""
    storage = results.get("storage")
    if not storage:
        return []

    def row(label: str, figures: dict[str, Any]) -> list[str]:
        return [
            label,
            f"{figures['bytes_per_settlement']:,.1f}",
            *(f"{figures[f'{counter}_per_settlement']:.3f}" for counter in ROW_COUNTERS),
        ]

    return [*(row(table["table"], table) for table in storage["tables"]), row("all tables", storage)]


def table(headers: list[str], rows: list[list[str]], *, right: tuple[int, ...] = ()) -> str:
    """A plain-text table; columns listed in ``right`` are right-aligned (numbers)."""
    widths = [max(len(headers[column]), *(len(row[column]) for row in rows)) for column in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if column in right else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), "  ".join("-" * width for width in widths), *(line(row) for row in rows)])


def json_document(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """What --json writes: every measurement, the figures the targets judge, and the targets table."""
    _, targets, all_met = build_report(results, args)
    columns = ("target", "value", "wanted", "verdict")
    return {
        **results,
        "target_figures": target_figures(results),
        "targets": [dict(zip(columns, row, strict=True)) for row in targets],
        "all_targets_met": all_met,
    }


def render(results: dict[str, Any], args: argparse.Namespace) -> tuple[str, bool]:
    machine = results["machine"]
    figures, targets, all_met = build_report(results, args)
    settings = machine["postgresql_settings"]
    load_start, load_end = results["load_average"]["start"], results["load_average"]["end"]
    header = [
        f"medsettle ceilings, {results['started']} on {machine['cpus_usable']} CPUs ({machine['cpu_model']})",
        f"PostgreSQL {machine['postgresql']} ({machine['database']}; fsync {settings.get('fsync')},"
        f" synchronous_commit {settings.get('synchronous_commit')}), Python {machine['python']}"
        f" ({'uvloop' if machine['uvloop'] else 'asyncio'}), {machine['wrk']}, {machine['pgbench']}",
        f"{args.people:,} people, {results.get('clinics', '?')} clinics; {args.duration} s per measurement;"
        f" gateway workers {args.workers or 1}, pool_max {args.pool_max or '12 (default)'} per worker,"
        f" settle batch max {args.batch_max or 'default'}",
        f"load average (1/5/15 min) {load_start[0]:.2f} / {load_start[1]:.2f} / {load_start[2]:.2f} at the start,"
        f" {load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f} at the end",
    ]
    text = "\n".join(
        [
            *header,
            "",
            table(["measurement", "result", "offered load and notes"], figures, right=(1,)),
            "",
            table(["target", "value", "wanted", "verdict"], targets),
        ]
    )
    storage = storage_rows(results)
    if storage:
        headers = ["storage per settlement, by table", "bytes", "rows inserted", "updated", "deleted"]
        text += "\n\n" + table(headers, storage, right=(1, 2, 3, 4))
    cpu = cpu_rows(results)
    if cpu:
        headers = ["CPU per operation, µs", "server", "PostgreSQL", "load generator", "total"]
        text += "\n\n" + table(headers, cpu, right=(1, 2, 3, 4))
    return text, all_met


# ---------------------------------------------------------------- main


def comma_separated(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("need at least one positive number")
    return values


MEASUREMENTS = ("engine", "http", "gateway", "storage", "database")


def measurement_names(text: str) -> set[str]:
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = names - set(MEASUREMENTS)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(MEASUREMENTS)}")
    return names


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per measurement (default 15, at most 240)")
    parser.add_argument("--people", type=int, default=20_000, help="population of the county (default 20000)")
    parser.add_argument("--pool-max", type=int, help="MEDSETTLE_POOL_MAX for the gateway (default: its own, 12)")
    parser.add_argument(
        "--batch-max",
        type=int,
        help="MEDSETTLE_SETTLE_BATCH_MAX for the gateway: 1 settles each alone, more batches (default: its own)",
    )
    parser.add_argument("--workers", type=int, help="pass --workers N to medsettle serve (default: not passed)")
    parser.add_argument("--json", action="store_true", help="also write the figures to benchmarks/out/")
    parser.add_argument(
        "--connections", type=comma_separated, default=[16, 64], help="gateway terminals (default 16,64)"
    )
    parser.add_argument("--pgbench-clients", type=comma_separated, default=[8, 16], help="default 8,16")
    parser.add_argument("--pgbench-threads", type=int, default=2, help="pgbench -j (default 2)")
    parser.add_argument("--http-connections", type=int, default=64, help="wrk -c for the HTTP ceiling (default 64)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk -t for the gateway runs (default 1)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of gateway warm-up, not reported (default 3)")
    parser.add_argument(
        "--max-rate", type=int, default=10_000, help="most settle requests signed per second of run (default 10000)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the county and its bills (default 1)")
    parser.add_argument(
        "--no-read", action="store_true", help="skip the pgbench run of the read, then the write (two round trips)"
    )
    parser.add_argument(
        "--storage-settlements",
        type=int,
        default=100_000,
        help="settlements to store for the storage measurement (default 100000)",
    )
    parser.add_argument(
        "--only",
        type=measurement_names,
        default=set(MEASUREMENTS),
        help=f"comma-separated subset of {','.join(MEASUREMENTS)} (default: all)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 240:  # signatures are valid for 300 s, and they are made just before each run
        parser.error("--duration must be between 1 and 240 seconds")
    if args.storage_settlements < 1:
        parser.error("--storage-settlements must be at least 1")
    if args.people < 100 or args.warmup < 1 or args.max_rate < 100 or args.wrk_threads < 1:
        parser.error("--people must be at least 100, --warmup at least 1, --max-rate at least 100")
    if (args.pool_max is not None and args.pool_max < 1) or (args.workers is not None and args.workers < 1):
        parser.error("--pool-max and --workers must be at least 1")
    return args


def phase(results: dict[str, Any], name: str, work: Callable[[], Any]) -> Any:
    """Run one measurement; a failure is recorded and shown in the table, and the others still run. One that
    raises Skipped is shown as skipped, with its reason, and its targets as n/a."""
    try:
        value = work()
    except Skipped as reason:
        log(f"{name} skipped: {reason}")
        results["skipped"] = sorted({*results["skipped"], name})
        results["skip_notes"][name] = str(reason)
        return None
    except Exception as error:
        traceback.print_exc()
        results["failures"][name] = f"{type(error).__name__}: {error}"[:300]
        return None
    results[name] = value
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    tool("wrk")
    tool("pgbench", pgserver_binary("pgbench"))
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "arguments": {key: sorted(value) if isinstance(value, set) else value for key, value in vars(args).items()},
        "load_average": {"start": os.getloadavg()},
        "failures": {},
        "skipped": sorted(set(MEASUREMENTS) - args.only),
        "skip_notes": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="medsettle-ceilings-"))
    processes = Processes()
    database = Database(workdir)
    server: dict[str, str] = {}
    try:
        if "engine" in args.only:
            log("engine alone (benchmarks/engine_bench.py)")
            phase(results, "engine", measure_engine)
        if "http" in args.only:
            log(f"HTTP ceiling: bare aiohttp, wrk -c{args.http_connections} for {args.duration} s")
            phase(results, "http", lambda: measure_http(processes, args, workdir))
        if args.only & {"gateway", "storage", "database"}:
            log("using DATABASE_URL's server" if "DATABASE_URL" in os.environ else "starting an embedded PostgreSQL")
            database.open()
            server = asyncio.run(server_facts(database.gateway_url))
            log(f"seeding {args.people:,} people (benchmarks/county.py)")
            county, keys = asyncio.run(seed(database.gateway_url, args.people, args.seed))
            results["clinics"] = len(county.clinics)
            database.clone_for_pgbench()
            stream = bill_stream(county, random.Random(args.seed + 1))
            stand_in_bodies = [next(stream)[1] for _ in range(100)]  # drawn first, so the gateway's bills stay put
            if "gateway" in args.only:
                phase(results, "gateway", lambda: measure_gateway(processes, args, workdir, database, stream, keys))
            if "storage" in args.only:
                phase(results, "storage", lambda: measure_storage(processes, args, workdir, database, stream, keys))
            if "database" in args.only:
                phase(
                    results,
                    "database",
                    lambda: measure_database(args, database, workdir, stand_in_records(county, stand_in_bodies)),
                )
    finally:
        processes.stop_all()
        database.close()
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_average"]["end"] = os.getloadavg()
    results["machine"] = machine_facts(server, database.kind or "not used")

    text, all_met = render(results, args)
    print(text)
    if args.json:
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"ceilings-{dt.datetime.now(dt.UTC).strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(json_document(results, args), indent=2, default=str) + "\n")
        print(f"\nwrote {path.relative_to(ROOT)}")
    if results["failures"]:
        return 2
    return 0 if all_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
