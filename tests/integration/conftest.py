"""Integration fixtures: a real PostgreSQL and the real gateway over real HTTP on 127.0.0.1.

Without DATABASE_URL the tests start their own embedded PostgreSQL (pgserver) in a
temporary folder. With DATABASE_URL they create a private database on that server
and drop it afterwards, so they never touch data they did not make.
"""

from __future__ import annotations

import asyncio
import compileall
import datetime as dt
import io
import itertools
import json
import os
import random
import re
import shutil
import tempfile
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters import db, identity, signing
from adapters.check import check_invariants
from adapters.demo import seed_demo, seed_demo_catalogue
from adapters.terminal_keys import ActiveKey, load_keys
from gateway.config import load_settings
from gateway.http.app import create_app

PEPPER = b"integration-test-pepper"
KEY_ENCRYPTION_KEY = bytes(range(32))
ADMIN = {"X-Terminal-Id": "admin-1"}
COUNTY = {"X-Terminal-Id": "term-C001"}
TOWNSHIP = {"X-Terminal-Id": "term-T001"}
VILLAGE = {"X-Terminal-Id": "term-V001"}
TABLES = (
    "people",
    "memberships",
    "settlements",
    "ledger_entries",
    "accumulators",
    "reversals",
)


ROOT = Path(__file__).resolve().parents[2]
# What ``medsettle`` processes and benchmarks/load.py import from this checkout.
COMPILED = ("gateway", "adapters", "settlement", "benchmarks", "clients/python/src")


@pytest.fixture(scope="session", autouse=True)
def _compiled_project() -> None:
    """The project's modules compiled to ``__pycache__`` once, before any test starts a process.

    The integration tests start some 170 ``medsettle`` processes. Where PYTHONDONTWRITEBYTECODE is
    set (in containers, say) no process may write what it compiled, so each one compiled the
    project's 130 modules again from source: 0.58 s of CPU per start, against 0.42 s from bytecode,
    about half a minute a run. compileall writes bytecode whatever that variable says (git ignores
    ``__pycache__``), skips what is current, and takes about a second on a fresh clone.
    """
    for folder in COMPILED:
        compileall.compile_dir(ROOT / folder, quiet=1)


def _with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server_url = os.environ.get("DATABASE_URL")
    if server_url:
        name = f"medsettle_test_{uuid.uuid4().hex[:10]}"
        asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
        yield _with_database(server_url, name)
        asyncio.run(_admin(server_url, f'DROP DATABASE "{name}" WITH (FORCE)'))
    else:
        # Not under pytest's temporary folder: every pytest start resets that folder's permissions,
        # which locks the embedded server's unprivileged user out of a running session's data.
        folder = Path(tempfile.mkdtemp(prefix="medsettle-test-pg-"))
        url, server = db.start_embedded(folder)
        yield url
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    connection = await asyncpg.connect(database_url)
    try:
        await db.migrate(connection)
        await seed_demo(connection, PEPPER, KEY_ENCRYPTION_KEY, population=200)
    finally:
        await connection.close()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_settings(
        {},
        id_pepper=PEPPER.decode(),
        terminal_key_key=KEY_ENCRYPTION_KEY.hex(),
        # Storm tests fire 100 requests at once from one terminal; the limiter has its own test.
        rate_limit_per_second=100_000,
        rate_limit_burst=100_000,
        data_dir=str(tmp_path_factory.mktemp("data")),
        pool_max=16,
        # CI runs the suite with the default; MEDSETTLE_SETTLE_BATCH_MAX=1 or 32 runs it without or with batching.
        settle_batch_max=os.environ.get("MEDSETTLE_SETTLE_BATCH_MAX"),
        reader_port=0,  # no card-reader listener on 8081 for every test app; test_card_reader picks a free port
    )


class SignedClient:
    """The test client, signing each request as the terminal named in ``X-Terminal-Id``.

    Tests say who is calling the way a person thinks of it; this wrapper does what a
    real terminal does: signs method, path, timestamp, nonce and body with that
    terminal's key. ``X-Terminal-Key: key_id:secret`` signs with an explicit key.
    """

    def __init__(self, client: TestClient, keys: dict[str, ActiveKey]) -> None:
        self.client = client
        self.by_terminal = {key.terminal_id: key for key in keys.values() if key.secret}

    async def request(
        self, method: str, path: str, *, json: Any = None, data: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        headers = dict(headers or {})
        if json is not None:
            body = msgspec.json.encode(json)
            data = body
            headers.setdefault("Content-Type", "application/json")
        elif data is None:
            body = b""
        elif isinstance(data, io.BytesIO):
            body = data.getvalue()
        else:
            body = data
        terminal = headers.pop("X-Terminal-Id", None)
        explicit = headers.pop("X-Terminal-Key", None)
        if explicit is not None:
            key_id, secret = explicit.split(":", 1)
            headers.update(signing.signed_headers(key_id, secret, method, path, body))
        elif terminal is not None:
            key = self.by_terminal.get(terminal)
            key_id, secret = (key.key_id, key.secret) if key else ("k_" + terminal, "sk_unknown")
            headers.update(signing.signed_headers(key_id, secret, method, path, body))
        return await self.client.request(method, path, data=data, headers=headers)

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Any:
        return await self.request("POST", path, **kwargs)

    async def refresh_keys(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as connection:
            keys = await load_keys(connection, KEY_ENCRYPTION_KEY)
        self.by_terminal = {key.terminal_id: key for key in keys.values() if key.secret}


@pytest.fixture(scope="session")
async def client(pool: asyncpg.Pool, database_url: str, settings: Any) -> AsyncIterator[SignedClient]:
    app = create_app(settings, dsn=database_url)
    async with pool.acquire() as connection:
        keys = await load_keys(connection, KEY_ENCRYPTION_KEY)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield SignedClient(test_client, keys)
    # Every integration run ends with the invariant check over everything the tests wrote.
    connection = await asyncpg.connect(database_url)
    try:
        violations = await check_invariants(connection)
    finally:
        await connection.close()
    assert not violations, f"invariants broken after the tests: {violations}"


_sequence = itertools.count(1)
_rng = random.Random(1234)


def fresh_national_id() -> str:
    """A valid national ID nobody else in the run has."""
    number = next(_sequence)
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=_rng.randrange(0, 365 * 70))
    return identity.make_id("410103", birth, number % 1000)


async def register(client: SignedClient, *programmes: tuple[str, str], **dates: dt.date) -> str:
    """Create a person through the API with the given (programme, code) memberships from 2026-01-01."""
    national_id = fresh_national_id()
    start = dates.get("effective_from", dt.date(2026, 1, 1))
    struck_off = dates.get("struck_off_on")
    memberships = [
        {
            "programme": programme,
            "code": code,
            "effective_from": start.isoformat(),
            **({"struck_off_on": struck_off.isoformat()} if struck_off and programme == "hardship_aid" else {}),
        }
        for programme, code in programmes
    ]
    response = await client.post(
        "/v1/people", json={"person_id": national_id, "memberships": memberships}, headers=ADMIN
    )
    assert response.status == 201, await response.text()
    return national_id


# Worked example 2 of docs/worked-examples.md, as the README sends it, and its person Li Na's programmes.
WORKED_EXAMPLE = json.loads((Path(__file__).resolve().parents[2] / "samples" / "bill-worked-example.json").read_bytes())
LI_NAS_PROGRAMMES = (
    ("insurance", "resident"),
    ("hardship_aid", "minimum_allowance"),
    ("veteran_subsidy", "priority_care"),
)


async def post_as_a_terminal(
    client: SignedClient, path: str, body: dict[str, Any], headers: dict[str, str] = TOWNSHIP, attempts: int = 5
) -> tuple[int, Any]:
    """POST and, on 503, send the same request again (the same request id), as a terminal does.

    The race tests' storms queue tens of requests on one row or one key, a commit each. A disk that
    stalls for seconds under the suite's other work (the other worker's database writing, say)
    holds such a queue past the 5 s lock and pool timeouts, and the gateway answers 503 with
    Retry-After: its contract for a database that did not answer in time (a 6 s pause of the
    database mid-storm answered one of fifty bills so). Those tests are about caps and
    idempotency, so they retry as the terminal would, a bounded number of times (after 0.2 s,
    sooner than the Retry-After a terminal waits for, to keep the tests short).
    """
    response = await client.post(path, json=body, headers=headers)
    for _ in range(attempts - 1):
        if response.status != 503:
            break
        response.release()
        await asyncio.sleep(0.2)
        response = await client.post(path, json=body, headers=headers)
    return response.status, await response.json()


async def worked_example_bill(client: SignedClient, request_id: str) -> dict[str, Any]:
    """Worked example 2 under ``request_id`` for a person of the test's own with Li Na's programmes: their year
    starts empty, so the bill is settled to the example's figures whatever else the run settled for Li Na."""
    person = await register(client, *LI_NAS_PROGRAMMES)
    return {**WORKED_EXAMPLE, "person_id": person, "request_id": request_id}


def bill(
    national_id: str,
    *items: tuple[str, int],
    clinic_id: str = "C001",
    visit_type: str = "inpatient",
    service_date: str = "2026-05-01",
    request_id: str | None = None,
) -> dict[str, Any]:
    return {
        "request_id": request_id or f"req-{uuid.uuid4().hex}",
        "clinic_id": clinic_id,
        "person_id": national_id,
        "visit_type": visit_type,
        "service_date": service_date,
        "items": [
            {"code": f"ITEM-{index}", "name": f"item {index}", "category": category, "amount": amount}
            for index, (category, amount) in enumerate(items)
        ],
    }


async def row_counts(pool: asyncpg.Pool, tables: tuple[str, ...] = TABLES) -> dict[str, int]:
    async with pool.acquire() as connection:
        return {table: await connection.fetchval(f"SELECT count(*) FROM {table}") for table in tables}


# ---------------------------------------------------------------- a gateway on another county's chain

THREE_TIER = Path(__file__).resolve().parents[2] / "policies" / "examples" / "three-tier"
ThreeTier = tuple[SignedClient, asyncpg.Pool, str]  # the test client, a pool and the URL of the database


@asynccontextmanager
async def empty_database(database_url: str, prefix: str) -> AsyncIterator[str]:
    """A database of its own on the test server, with no tables: its URL. Dropped at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    await _admin(database_url, f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(database_url, name)
    finally:
        await _admin(database_url, f'DROP DATABASE "{name}" WITH (FORCE)')


@asynccontextmanager
async def database_before(database_url: str, version: int) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a database of its own, migrated up to migration ``version`` and not through it: a
    gateway's database from before that migration, for the tests of what it does to old rows."""
    async with empty_database(database_url, "medsettle_migration") as url:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for migration, file_name, sql in db.migration_files():
                if migration >= version:
                    break
                async with connection.transaction():
                    await connection.execute(sql)
                    await connection.execute("INSERT INTO schema_migrations VALUES ($1, $2)", migration, file_name)
            yield connection
        finally:
            await connection.close()


@asynccontextmanager
async def own_database(
    database_url: str, prepare: Callable[[asyncpg.Connection], Awaitable[None]] | None = None
) -> AsyncIterator[tuple[str, dict[str, ActiveKey]]]:
    """A database of its own, migrated, seeded with the demo county and then ``prepare``d: its URL and the
    terminal keys. Dropped at the end."""
    async with empty_database(database_url, "medsettle_own") as url:
        connection = await asyncpg.connect(url)
        try:
            await db.migrate(connection)
            await seed_demo(connection, PEPPER, KEY_ENCRYPTION_KEY, population=50)
            if prepare is not None:
                await prepare(connection)
            keys = await load_keys(connection, KEY_ENCRYPTION_KEY)
        finally:
            await connection.close()
        yield url, keys


@asynccontextmanager
async def own_gateway(
    database_url: str,
    settings: Any,
    *,
    policy_dir: Path | None = None,
    prepare: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    **changes: Any,
) -> AsyncIterator[tuple[SignedClient, asyncpg.Pool, str]]:
    """A gateway over a database of its own, seeded with the demo county and then ``prepare``d, for tests
    whose data would change what the shared database means to every other test (another policy book, an
    item catalogue), with ``changes`` to its settings. Ends with the invariant check over what it wrote."""
    async with own_database(database_url, prepare) as (url, keys):
        if policy_dir is not None:
            changes["policy_dir"] = str(policy_dir)
        app = create_app(msgspec.structs.replace(settings, **changes), dsn=url)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        try:
            async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
                yield SignedClient(test_client, keys), pool, url
            async with pool.acquire() as connection:
                assert await check_invariants(connection) == []
        finally:
            await pool.close()


@asynccontextmanager
async def worked_example_settled(
    database_url: str, settings: Any
) -> AsyncIterator[tuple[SignedClient, dict[str, Any]]]:
    """The README's request (samples/bill-worked-example.json, the demo's 李娜 (Li Na)) settled on a county of
    its own with the sample item catalogue, as ``make run`` serves it: the test client and the answer."""

    async def sample_catalogue(connection: asyncpg.Connection) -> None:
        assert await seed_demo_catalogue(connection, ROOT / "samples" / "catalogue-2026.csv") > 0

    async with own_gateway(database_url, settings, prepare=sample_catalogue) as (client, _, _):
        example = json.loads((ROOT / "samples" / "bill-worked-example.json").read_text(encoding="utf-8"))
        response = await client.post("/v1/settlements", json=example, headers=COUNTY)
        assert response.status == 201, await response.text()
        yield client, await response.json()


@pytest.fixture(scope="module")
async def three_tier(database_url: str, settings: Any) -> AsyncIterator[ThreeTier]:
    """A gateway on policies/examples/three-tier, per test module, over a database of its own: a database
    holds one policy version per effective date, and this one takes effect on the default's day."""
    async with own_gateway(database_url, settings, policy_dir=THREE_TIER) as gateway:
        yield gateway


# The functions migration 0012 created, as it created them (later migrations replace their bodies).
FUNCTIONS_OF_0012 = ("counters_within_caps", "greatest_caps", "fund_amounts_valid", "fund_amounts_total")


def bodies_of_0012() -> str:
    """The functions of 0012 exactly as it created them, as temporary functions named old_<name>."""
    sql = (ROOT / "adapters" / "migrations" / "0012_chain_counters.sql").read_text(encoding="utf-8")
    found = re.findall(r"CREATE FUNCTION (\w+)\((.*?)\$\$;", sql, flags=re.DOTALL)
    bodies = [f"CREATE FUNCTION pg_temp.old_{name}({rest}$$;" for name, rest in found if name in FUNCTIONS_OF_0012]
    assert len(bodies) == len(FUNCTIONS_OF_0012)
    return "\n".join(bodies)


@pytest.fixture
async def with_0012_functions(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection with the functions of 0012 beside the migrated ones, as pg_temp.old_<name>."""
    async with pool.acquire() as connection:
        await connection.execute(bodies_of_0012())
        try:
            yield connection
        finally:
            await connection.execute("DISCARD TEMP")
