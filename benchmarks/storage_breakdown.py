"""What each byte a settlement keeps on disk is for: column by column, index by index.

    .venv/bin/python benchmarks/storage_breakdown.py [--settlements 20000] [--seed 1]

Settles bills of the synthetic county (benchmarks/county.py) through the real use case and store
(gateway/service.py, adapters/store.py, batching on, as the gateway runs) on an embedded
PostgreSQL, then prints the average stored size of each column of ``settlements``
(``pg_column_size``: the bytes in the row, after any compression), the row header and item
pointer, each index and the accumulator rows, per settlement. ``benchmarks/ceilings.py`` measures
the total the same bills take through HTTP; docs/storage.md explains the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import msgspec  # noqa: E402

from adapters import db  # noqa: E402
from adapters.policy_files import load_policy_book, policy_dir  # noqa: E402
from adapters.store import Store  # noqa: E402
from benchmarks.county import bill_stream, build_county, load_county  # noqa: E402
from gateway import api_models as api  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.service import Service, Terminal  # noqa: E402
from settlement.chain import policy_document  # noqa: E402
from settlement.errors import SettlementError  # noqa: E402

PEPPER = b"storage-breakdown-pepper"


async def settle_many(url: str, count: int, seed: int) -> int:
    connection = await asyncpg.connect(url)
    county = build_county(seed=seed)
    try:
        await db.migrate(connection)
        await load_county(connection, county, pepper=PEPPER, key_encryption_key=bytes(32))
    finally:
        await connection.close()
    pool = await db.create_pool(url, max_size=8)
    store = Store(pool, batch_max=32, batch_lanes=4)
    book = load_policy_book(policy_dir())
    await store.sync_policies([(policy, "policies", policy_document(policy)) for policy in book])
    service = Service(store, book, PEPPER, Metrics(), key_encryption_key=bytes(32))
    await service.load_reference()
    store.start()
    stream = bill_stream(county, random.Random(seed), service_date=dt.date.today())
    clinic_of = {terminal.terminal_id: terminal.clinic_id for terminal in county.terminal_by_clinic.values()}
    settled = 0

    async def one() -> None:
        nonlocal settled
        terminal_id, body = next(stream)
        request = msgspec.convert(body, api.SettleRequest)
        try:
            await service.settle(Terminal(terminal_id, clinic_of[terminal_id], "terminal"), request)
            settled += 1
        except SettlementError:  # a bill the engine or the registry refuses is no settlement
            pass

    try:
        while settled < count:
            await asyncio.gather(*(one() for _ in range(min(64, count - settled))))
    finally:
        await store.stop()
        await pool.close()
    return settled


async def report(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("VACUUM ANALYZE settlements")
        count = await connection.fetchval("SELECT count(*) FROM settlements")
        columns = [
            row["attname"]
            for row in await connection.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'settlements'::regclass AND attnum > 0"
                " AND NOT attisdropped ORDER BY attnum"
            )
        ]
        sizes = await connection.fetchrow(
            "SELECT "
            + ", ".join(f'avg(coalesce(pg_column_size("{c}"), 0))::float AS "{c}"' for c in columns)
            + ", avg(pg_column_size(s.*))::float AS whole_row FROM settlements s"
        )
        heap = await connection.fetchval("SELECT pg_relation_size('settlements')")
        toast = await connection.fetchval(
            "SELECT coalesce(pg_total_relation_size(reltoastrelid), 0) FROM pg_class WHERE relname = 'settlements'"
        )
        indexes = await connection.fetch(
            "SELECT indexrelname AS name, pg_relation_size(indexrelid) AS bytes FROM pg_stat_user_indexes"
            " WHERE relname = 'settlements' ORDER BY 2 DESC"
        )
        accumulators = await connection.fetchval("SELECT pg_total_relation_size('accumulators')")
        hot = await connection.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'accumulators'"
        )
    finally:
        await connection.close()
    print(f"{count:,} settlements of the synthetic county\n")
    print(f"{'column':<22} {'bytes':>8}  (average stored size in the row)")
    for column in columns:
        print(f"{column:<22} {sizes[column]:8.1f}")
    fields = sum(sizes[column] for column in columns)
    print(f"{'(all columns)':<22} {fields:8.1f}")
    print(f"{'(row as stored)':<22} {sizes['whole_row']:8.1f}  the row: header, null bitmap, alignment and columns")
    print(f"\n{'relation':<32} {'bytes per settlement':>20}")
    print(f"{'settlements heap (pages)':<32} {heap / count:20.1f}  rows, item pointers, page headers, free space")
    if toast:
        print(f"{'settlements TOAST':<32} {toast / count:20.1f}")
    for index in indexes:
        print(f"{index['name']:<32} {index['bytes'] / count:20.1f}")
    print(f"{'accumulators (all)':<32} {accumulators / count:20.1f}  one row per person and year, updated in place")
    print(f"accumulator updates: {hot['n_tup_upd']:,}, of which HOT (no index touched): {hot['n_tup_hot_upd']:,}")
    total = heap + toast + sum(index["bytes"] for index in indexes) + accumulators
    print(f"{'total':<32} {total / count:20.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settlements", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    with tempfile.TemporaryDirectory(prefix="medsettle-storage-") as folder:
        url, server = db.start_embedded(Path(folder))
        try:
            asyncio.run(settle_many(url, args.settlements, args.seed))
            asyncio.run(report(url))
        finally:
            server.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
