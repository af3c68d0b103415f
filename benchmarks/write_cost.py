"""PostgreSQL's CPU for the settle write, for the schema as it is and for variants of it, side by side.

    .venv/bin/python benchmarks/write_cost.py
    .venv/bin/python benchmarks/write_cost.py --variant no-person-day="DROP INDEX settlements_by_person_day"
    .venv/bin/python benchmarks/write_cost.py --variant new-check=path/to/function.sql --rounds 5

What a change to the schema costs or saves PostgreSQL is a few µs a settlement, inside the noise of whole
gateway runs (benchmarks/versus.py). This measures the settle write alone. It seeds the synthetic county
(benchmarks/county.py) once, in an embedded PostgreSQL or on DATABASE_URL's server if that server runs on
this machine, and copies it for each variant (``CREATE DATABASE ... TEMPLATE``); a variant's SQL (text, or a
file's path) runs in its copy. Every copy then gets the same stream of bills, each decided by the gateway's
own Service and engine on what that copy holds, grouped into batches of distinct person-years as the write
batcher groups them (``--batch``), and written with the gateway's own statement (``write_statement``,
``write_arguments``) on a connection that does nothing else. That connection's backend CPU (from /proc)
over the settlements written is the figure: the reads that decide the bills run on other connections.

The county is small (``--people``, default 2,000) so that most settlements update a person-year that has
settled before, as in a gateway run, rather than create one. Each copy writes ``--warmup`` batches first
and is analysed; each round then writes ``--batches`` batches to every copy, in an order that alternates
from round to round, each from a CHECKPOINT. Prints each round, then each variant's median and its ratio
to the schema as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import msgspec  # noqa: E402

from adapters import db  # noqa: E402
from adapters.policy_files import load_policy_book  # noqa: E402
from adapters.settlement_sql import write_arguments, write_statement  # noqa: E402
from adapters.store import Store  # noqa: E402
from benchmarks.county import bill_stream, build_county, load_county  # noqa: E402
from gateway import api_models as api  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.service import Service, Terminal, request_hash  # noqa: E402
from settlement.chain import policy_document  # noqa: E402
from settlement.decision import decide  # noqa: E402
from settlement.errors import SettlementError  # noqa: E402
from settlement.ports import NewSettlement, PersonSnapshot, SettleKey  # noqa: E402

PEPPER = b"write-cost-pepper"
KEY_ENCRYPTION_KEY = bytes(range(64, 96))
AS_IS = "as-is"
_TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process on this machine, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def with_database(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name`` (query parameters, such as a socket's host, kept)."""
    base, _, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{name}" + (f"?{query}" if query else "")


def variant(text: str) -> tuple[str, str]:
    """``NAME=SQL`` or ``NAME=PATH``: a variant's name and the SQL that makes it."""
    name, separator, sql = text.partition("=")
    if not separator or not name or not sql:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=SQL or NAME=PATH")
    if name == AS_IS:
        raise argparse.ArgumentTypeError(f"{AS_IS!r} is the schema as it is; name the variant otherwise")
    path = Path(sql)
    return name, path.read_text(encoding="utf-8") if path.is_file() else sql


@dataclass
class Copy:
    """One variant's database: its read side (a Service on a small pool) and its writer connection."""

    name: str
    pool: asyncpg.Pool
    service: Service
    writer: asyncpg.Connection
    writer_pid: int
    bills: Iterator[tuple[str, dict[str, Any]]]
    microseconds: list[float] = field(default_factory=list)

    async def decided(self, terminal_id: str, body: dict[str, Any]) -> NewSettlement | None:
        """The settlement this bill would write now, as the gateway decides it (None: it would be refused)."""
        service = self.service
        request = msgspec.convert(body, api.SettleRequest)
        try:
            clinic, bill, policy, catalogue, person_key, masked = await service._prepare_bill(
                Terminal(terminal_id, request.clinic_id, "terminal"), request
            )
            key = SettleKey(
                person_key=person_key,
                year=bill.service_date.year,
                terminal_id=terminal_id,
                request_id=request.request_id,
            )
            found = await service.store.read_for_settle(key)
            if not isinstance(found, PersonSnapshot):
                return None
            return NewSettlement(
                key=key,
                settlement_id=uuid.uuid4(),
                clinic_id=clinic.clinic_id,
                person=masked,
                items=bill.items,
                decision=decide(bill, policy, found.memberships, found.counters, catalogue),
                request_hash=request_hash(PEPPER, "settle", request.fingerprinted()),
                booked_on=dt.date.today(),
                created_at=dt.datetime.now(dt.UTC),
                version=found.version,
            )
        except SettlementError:
            return None

    async def batch(self, size: int) -> list[NewSettlement]:
        """The next ``size`` settlements of the stream with distinct person-years (a bill for a person-year
        already in the batch is dropped, as the stream is the same for every copy)."""
        batch: list[NewSettlement] = []
        taken: set[tuple[bytes, int]] = set()
        while len(batch) < size:
            terminal_id, body = next(self.bills)
            new = await self.decided(terminal_id, body)
            if new is None or (new.key.person_key, new.key.year) in taken:
                continue
            taken.add((new.key.person_key, new.key.year))
            batch.append(new)
        return batch

    async def write(self, batches: int, size: int) -> tuple[float, int]:
        """Write ``batches`` batches: the writer's CPU in seconds, and the settlements written."""
        cpu = 0.0
        written = 0
        for _ in range(batches):
            batch = await self.batch(size)
            before = backend_cpu_seconds(self.writer_pid)
            rows = await self.writer.fetch(write_statement(batch), *write_arguments(batch))
            cpu += backend_cpu_seconds(self.writer_pid) - before
            # Each batch was decided on what the copy held after the last one committed, so all of it must
            # be written; if not, the stream no longer fits the statement and the figure would mean nothing.
            refused = len(batch) - sum(1 for row in rows if row["written"])
            if refused:
                raise RuntimeError(f"{self.name}: {refused} of a batch of {len(batch)} settlements not written")
            written += len(batch)
        return cpu, written


async def open_copy(name: str, url: str, sql: str, bills: Iterator[tuple[str, dict[str, Any]]]) -> Copy:
    if sql:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()
    pool = await db.create_pool(url, min_size=1, max_size=2)
    service = Service(Store(pool), load_policy_book(), PEPPER, Metrics(), key_encryption_key=KEY_ENCRYPTION_KEY)
    await service.load_reference()
    await service.refresh_catalogue()
    writer = await asyncpg.connect(url)
    pid = int(await writer.fetchval("SELECT pg_backend_pid()"))
    if not Path(f"/proc/{pid}/stat").exists():
        raise SystemExit("the database server does not run on this machine: its backend's CPU cannot be read")
    return Copy(name, pool, service, writer, pid, bills)


async def seed_base(url: str, people: int, seed: int) -> Any:
    """Migrate, load the county and record the policy folder's versions, as a gateway's start-up does."""
    county = build_county(seed, people=people)
    connection = await asyncpg.connect(url)
    try:
        await db.migrate(connection)
        await load_county(connection, county, pepper=PEPPER, key_encryption_key=KEY_ENCRYPTION_KEY)
        pool = await db.create_pool(url, min_size=1, max_size=1)
        try:
            book = load_policy_book()
            await Store(pool).sync_policies([(policy, "policies", policy_document(policy)) for policy in book])
        finally:
            await pool.close()
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return county


async def run(args: argparse.Namespace, *, prefix: str | None = None) -> dict[str, list[float]]:
    """Each variant's µs a settlement, round by round, in databases named ``prefix``..., dropped at the end."""
    server: Any = None
    server_url = os.environ.get("DATABASE_URL")
    workdir = tempfile.TemporaryDirectory(prefix="medsettle-write-cost-")
    if not server_url:
        server_url, server = db.start_embedded(Path(workdir.name) / "pg")
    prefix = prefix or f"medsettle_write_cost_{uuid.uuid4().hex[:8]}"
    variants = [(AS_IS, ""), *args.variant]
    names = [f"{prefix}_base", *(f"{prefix}_{index}" for index in range(len(variants)))]
    admin = await asyncpg.connect(server_url)
    copies: list[Copy] = []
    try:
        await admin.execute(f'CREATE DATABASE "{names[0]}"')
        county = await seed_base(with_database(server_url, names[0]), args.people, args.seed)
        for name in names[1:]:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{names[0]}"')
        for (label, sql), name in zip(variants, names[1:], strict=True):
            bills = bill_stream(county, random.Random(args.seed + 1))  # the same stream for every copy
            copies.append(await open_copy(label, with_database(server_url, name), sql, bills))
        for copy in copies:
            await copy.write(args.warmup, args.batch)
            await copy.writer.execute("ANALYZE")
        for round_number in range(args.rounds):
            order = copies if round_number % 2 == 0 else copies[::-1]
            for copy in order:
                await copy.writer.execute("CHECKPOINT")
                cpu, written = await copy.write(args.batches, args.batch)
                copy.microseconds.append(cpu / max(written, 1) * 1e6)
                print(
                    f"round {round_number + 1}  {copy.name:24s} {copy.microseconds[-1]:7.1f} µs a settlement"
                    f"  ({written:,} written)",
                    flush=True,
                )
        return {copy.name: copy.microseconds for copy in copies}
    finally:
        for copy in copies:
            await copy.writer.close()
            await copy.pool.close()
        for name in reversed(names):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        if server is not None:
            server.cleanup()
        workdir.cleanup()


def report(results: dict[str, list[float]]) -> str:
    base = statistics.median(results[AS_IS])
    lines = [f"{'variant':24s} {'median':>8s}  ratio  rounds (µs a settlement)"]
    for name, values in results.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{value:.1f}" for value in values)
        ratio = f"{median / base:5.2f}" if base else "    -"  # a run too short for one clock tick measures 0
        lines.append(f"{name:24s} {median:8.1f}  {ratio}  {rounds}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", type=variant, action="append", default=[], metavar="NAME=SQL|PATH")
    parser.add_argument("--people", type=int, default=2_000, help="people in the county (default 2,000)")
    parser.add_argument("--batch", type=int, default=8, help="settlements a batch (default 8)")
    parser.add_argument("--warmup", type=int, default=300, help="batches each copy writes first (default 300)")
    parser.add_argument("--batches", type=int, default=1_000, help="batches a round (default 1,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the county and its bills (default 1)")
    args = parser.parse_args(argv)
    print(report(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
