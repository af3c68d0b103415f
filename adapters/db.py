"""PostgreSQL plumbing: the embedded server, the connection pool and migrations."""

from __future__ import annotations

import asyncio
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

MIGRATIONS_LOCK = 7_215_001  # pg_advisory_xact_lock key: one migrator at a time across replicas


def start_embedded(data_dir: Path) -> tuple[str, Any]:
    """Start (or reuse) a private PostgreSQL in ``data_dir`` from the pgserver wheel.

    Returns the connection URL and the server handle; the server stops when the
    last process using it exits. Needs the ``embedded`` extra.
    """
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")  # pgserver's platformdirs, harmless
    try:
        import pgserver  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - depends on installed extras
        raise SystemExit(
            "No DATABASE_URL is set and the embedded PostgreSQL is not installed.\n"
            "Install it with: pip install -e '.[embedded]'  (or set DATABASE_URL)"
        ) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
    return server.get_uri(), server


async def _init_connection(connection: asyncpg.Connection) -> None:
    # Statements that wait on a lock longer than this fail instead of piling up.
    await connection.execute("SET lock_timeout = '5s'; SET statement_timeout = '15s'")


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Skip asyncpg's per-release reset query (it cost 20-25 % of throughput in early trials).

    Safe because the gateway never changes session state after connect: no
    LISTEN, no advisory session locks, no SET outside ``_init_connection``.
    """


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 12) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_no_reset,
        command_timeout=20,
        max_inactive_connection_lifetime=300,
    )


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped with the package, in order."""
    folder = resources.files("adapters") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(connection: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction. Returns their names."""
    async with connection.transaction():
        # Under the lock too: two processes starting on a fresh database both pass IF NOT EXISTS, and
        # the second CREATE fails on pg_type's unique index (seen with `medsettle serve --workers N`).
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATIONS_LOCK)
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
    applied_now = []
    for version, name, sql in migration_files():
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATIONS_LOCK)
            done = await connection.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", version)
            if done:
                continue
            await connection.execute(sql)
            await connection.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            applied_now.append(name)
    return applied_now


def is_database_error(error: BaseException) -> bool:
    """Errors meaning the database cannot be reached or the pool is exhausted: answer 503, not 500."""
    return isinstance(
        error,
        OSError
        | asyncio.TimeoutError
        | asyncpg.exceptions.ConnectionDoesNotExistError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.PostgresConnectionError
        | asyncpg.exceptions.TooManyConnectionsError
        | asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.InterfaceError
        # An idle pooled connection that has read the server's shutdown notice but not yet its
        # end of stream is handed out and fails with "another operation is in progress".
        | asyncpg.exceptions.InternalClientError
        | asyncpg.exceptions.QueryCanceledError
        # A deadlock or serialization failure rolled the statement back whole: retrying is safe.
        | asyncpg.exceptions.TransactionRollbackError
        | asyncpg.exceptions.LockNotAvailableError,
    )
