"""The command line's database: ``DATABASE_URL`` or the embedded server, and a connection that fails fast.

Kept apart from ``gateway.cli.main`` so every command module (``gateway.cli.reports`` too) shares one
``DatabaseUnreachable``, whether the CLI runs as the ``medsettle`` script or as ``python -m gateway.cli``.
"""

from __future__ import annotations

import errno
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from adapters import db
from gateway.config import Settings

T = TypeVar("T")
# The connection every command's work is given; command modules name its type through here, not asyncpg.
Connection = asyncpg.Connection

_embedded_servers: list[Any] = []  # keep the embedded server alive for the life of the process


def database_url(settings: Settings) -> str:
    """``DATABASE_URL`` when set; otherwise the embedded PostgreSQL in the data folder."""
    if settings.database_url:
        return settings.database_url
    url, server = db.start_embedded(Path(settings.data_dir).resolve() / "pg")
    _embedded_servers.append(server)
    return url


# A person at a terminal should hear within seconds that DATABASE_URL is wrong or the server is down, not
# wait in silence. Start-up ordering in compose and Kubernetes is left to their health checks and restarts.
CONNECT_TIMEOUT_SECONDS = 5
DATABASE_HINT = "Check DATABASE_URL; is the PostgreSQL server running and reachable there?"


class DatabaseUnreachable(Exception):
    """No connection to the database: one line for a person, naming where and what to check."""


def database_address(url: str) -> str:
    """Host and port of a PostgreSQL URL, never the user or password."""
    try:
        parts = urllib.parse.urlsplit(url)
        hosts = parts.netloc.rpartition("@")[2]
        if "," in hosts:  # several host:port pairs, tried in turn
            return hosts
        query = urllib.parse.parse_qs(parts.query)
        host = parts.hostname or query.get("host", ["localhost"])[0]
        port = parts.port or query.get("port", ["5432"])[0]
    except ValueError:
        return "the address in DATABASE_URL"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def connect(url: str) -> asyncpg.Connection:
    """A connection within ``CONNECT_TIMEOUT_SECONDS``, or ``DatabaseUnreachable`` saying where and why."""
    hint = DATABASE_HINT
    try:
        return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_SECONDS)
    except TimeoutError:
        reason = f"no answer within {CONNECT_TIMEOUT_SECONDS} s (connect timed out)"
    except OSError as error:
        # asyncpg reports a name that resolves to several addresses, each refused, as a plain OSError.
        refused = isinstance(error, ConnectionRefusedError) or f"[Errno {errno.ECONNREFUSED}]" in str(error)
        reason = "connection refused" if refused else error.strerror or str(error)
    except asyncpg.PostgresError as error:  # the server answered: wrong user, password or database name
        reason = str(error)
        hint = "Check the user, password and database name in DATABASE_URL."
    except (asyncpg.InterfaceError, ValueError) as error:  # a malformed DATABASE_URL
        reason = str(error)
        hint = "Check DATABASE_URL: postgresql://USER:PASSWORD@HOST:PORT/DATABASE."
    raise DatabaseUnreachable(f"cannot connect to the database at {database_address(url)}: {reason}. {hint}")


async def with_connection(url: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    connection = await connect(url)
    try:
        return await work(connection)
    finally:
        await connection.close()


async def nothing(connection: asyncpg.Connection) -> None:
    """Work for ``with_connection`` that only proves the database answers."""
