"""The record of every message to the insurer's core (migration 0017), kept so no remote outcome is lost.

A settle or cancel is recorded (``record``) in its own committed transaction before it is sent, with a
message id the database makes: the institution code, the China time to the second and a cycling 4-digit
sequence. What is learnt afterwards moves its state (``mark``), each move guarded by the states it may
come from, so a live request and the sweeper (gateway/insurer.py) never both act on one message:
whichever moves it first owns it. The settlement that books an answered settle flips it to
``committed`` in the statement that writes it (``WRITE_SETTLEMENTS``, adapters/settlement_sql.py; a
reversal's cancel by ``claim_answered``): a settle the sweeper has started to cancel can no longer be
booked, and a booked one can no longer be cancelled.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final, Literal

import asyncpg
import msgspec

MessageKind = Literal["settle", "cancel"]
OPEN_STATES: Final = ("sent", "answered", "reversing", "cancelling")

_json = msgspec.json.Encoder()

# The interface's message id: institution code (12) + yyyyMMddHHmmss (China time) + 4-digit sequence.
_NEW_ID: Final = """$1 || to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDDHH24MISS')
    || lpad(nextval('insurer_message_sequence')::text, 4, '0')"""

_RECORD: Final = f"""
INSERT INTO insurer_messages (message_id, person_key, kind, transaction_code, terminal_id, request_id, clinic_id,
                              service_date, settlement_id, insurer_settlement_id, request, visit_id, state)
VALUES ({_NEW_ID}, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, 'sent')
RETURNING message_id
"""


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One message as recorded."""

    message_id: str
    person_key: bytes
    kind: MessageKind
    transaction_code: str
    terminal_id: str
    request_id: str
    visit_id: str
    clinic_id: str
    service_date: dt.date
    settlement_id: uuid.UUID | None
    state: str
    insurer_settlement_id: str | None
    paid: dict[str, int] | None
    request: dict[str, Any] | None
    detail: str | None
    tries: int
    sent_at: dt.datetime
    answered_at: dt.datetime | None


_COLUMNS: Final = """message_id, person_key, kind, transaction_code, terminal_id, request_id, visit_id, clinic_id,
    service_date, settlement_id, state, insurer_settlement_id, paid::text AS paid, request::text AS request, detail,
    tries, sent_at, answered_at"""


def _message(row: asyncpg.Record) -> Message:
    fields = dict(row)
    fields["person_key"] = bytes(fields["person_key"])
    for name in ("paid", "request"):
        if fields[name] is not None:
            fields[name] = msgspec.json.decode(fields[name])
    return msgspec.convert(fields, Message)


async def new_message_id(connection: asyncpg.Connection | asyncpg.Pool, institution_code: str) -> str:
    """A fresh message id, for a message that changes nothing by itself (a reversal, a query)."""
    return str(await connection.fetchval(f"SELECT {_NEW_ID}", institution_code))


async def record(
    connection: asyncpg.Connection | asyncpg.Pool,
    *,
    institution_code: str,
    person_key: bytes,
    kind: MessageKind,
    transaction_code: str,
    terminal_id: str,
    request_id: str,
    visit_id: str,
    clinic_id: str,
    service_date: dt.date,
    settlement_id: uuid.UUID | None = None,
    insurer_settlement_id: str | None = None,
    request: dict[str, Any] | None = None,
) -> str | None:
    """Record a message about to be sent and return its id; None when the same request already has an
    open message of this kind (a concurrent copy of it is in flight: the caller must not send)."""
    try:
        return str(
            await connection.fetchval(
                _RECORD,
                institution_code,
                person_key,
                kind,
                transaction_code,
                terminal_id,
                request_id,
                clinic_id,
                service_date,
                settlement_id,
                insurer_settlement_id,
                None if request is None else _json.encode(request).decode(),
                visit_id,
            )
        )
    except asyncpg.UniqueViolationError as error:
        if error.constraint_name == "insurer_messages_one_open":
            return None
        raise


async def open_message(
    connection: asyncpg.Connection | asyncpg.Pool,
    person_key: bytes,
    terminal_id: str,
    request_id: str,
    kind: MessageKind,
) -> Message | None:
    """The request's open message of this kind, if any."""
    row = await connection.fetchrow(
        f"""SELECT {_COLUMNS} FROM insurer_messages
            WHERE person_key = $1 AND terminal_id = $2 AND request_id = $3 AND kind = $4
              AND state IN ('sent', 'answered', 'reversing', 'cancelling')""",
        person_key,
        terminal_id,
        request_id,
        kind,
    )
    return None if row is None else _message(row)


async def mark(
    connection: asyncpg.Connection | asyncpg.Pool,
    message: Message | tuple[bytes, str],
    to: str,
    *,
    expect: tuple[str, ...],
    insurer_settlement_id: str | None = None,
    paid: dict[str, int] | None = None,
    detail: str | None = None,
    settlement_id: uuid.UUID | None = None,
) -> bool:
    """Move a message to state ``to`` if it is still in one of ``expect``; whether it moved."""
    person_key, message_id = (message.person_key, message.message_id) if isinstance(message, Message) else message
    moved = await connection.fetchval(
        """UPDATE insurer_messages SET
               state = $3,
               insurer_settlement_id = coalesce($5, insurer_settlement_id),
               paid = coalesce($6::jsonb, paid),
               detail = coalesce($7, detail),
               settlement_id = coalesce($8, settlement_id),
               answered_at = CASE WHEN $3 = 'answered' THEN now() ELSE answered_at END,
               finished_at = CASE WHEN $3 IN ('committed', 'refused', 'unsent', 'reversed', 'cancelled', 'superseded')
                                  THEN now() ELSE finished_at END
           WHERE person_key = $1 AND message_id = $2 AND state = ANY($4::text[])
           RETURNING true""",
        person_key,
        message_id,
        to,
        list(expect),
        insurer_settlement_id,
        None if paid is None else _json.encode(paid).decode(),
        detail,
        settlement_id,
    )
    return bool(moved)


async def claim_answered(
    connection: asyncpg.Connection, person_key: bytes, message_id: str, settlement_id: uuid.UUID
) -> bool:
    """In the transaction that books a settle (or a cancel's reversal): flip its answered message to
    ``committed``. False when it is no longer answered (the sweeper has begun to cancel it): the caller
    must then roll back and book nothing."""
    return await mark(
        connection, (person_key, message_id), "committed", expect=("answered",), settlement_id=settlement_id
    )


# ---------------------------------------------------------------- the sweeper's list

# Open messages older than the grace, oldest first, each locked for the caller's transaction; a message
# another process holds is skipped, so two gateways' sweepers never act on the same message.
_DUE: Final = f"""
SELECT {_COLUMNS} FROM insurer_messages
WHERE state IN ('sent', 'answered', 'reversing', 'cancelling') AND sent_at < now() - $1::interval
ORDER BY sent_at
LIMIT 1
FOR UPDATE SKIP LOCKED
"""


async def take_due(connection: asyncpg.Connection, grace: dt.timedelta) -> Message | None:
    """The oldest open message past ``grace``, locked in the caller's transaction; None when there is none."""
    row = await connection.fetchrow(_DUE, grace)
    if row is None:
        return None
    await connection.execute(
        "UPDATE insurer_messages SET tries = tries + 1 WHERE person_key = $1 AND message_id = $2",
        row["person_key"],
        row["message_id"],
    )
    return _message(row)


async def open_count(connection: asyncpg.Connection | asyncpg.Pool) -> int:
    """Messages whose outcome is not yet settled on both sides."""
    return int(
        await connection.fetchval(
            "SELECT count(*) FROM insurer_messages WHERE state IN ('sent', 'answered', 'reversing', 'cancelling')"
        )
    )


class MessageLog:
    """The message record over the gateway's pool: what gateway/insurer.py reads and writes."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float = 5.0) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout

    async def new_message_id(self, institution_code: str) -> str:
        async with self.pool.acquire(timeout=self.acquire_timeout) as connection:
            return await new_message_id(connection, institution_code)

    async def record(self, **fields: Any) -> str | None:
        async with self.pool.acquire(timeout=self.acquire_timeout) as connection:
            return await record(connection, **fields)

    async def open_message(
        self, person_key: bytes, terminal_id: str, request_id: str, kind: MessageKind
    ) -> Message | None:
        async with self.pool.acquire(timeout=self.acquire_timeout) as connection:
            return await open_message(connection, person_key, terminal_id, request_id, kind)

    async def mark(self, message: Message | tuple[bytes, str], to: str, **fields: Any) -> bool:
        async with self.pool.acquire(timeout=self.acquire_timeout) as connection:
            return await mark(connection, message, to, **fields)

    async def open_count(self) -> int:
        async with self.pool.acquire(timeout=self.acquire_timeout) as connection:
            return await open_count(connection)

    @contextlib.asynccontextmanager
    async def due(self, grace: dt.timedelta) -> AsyncIterator[tuple[Message, asyncpg.Connection] | None]:
        """The oldest open message past ``grace``, locked until the block ends (and its transaction commits),
        with the connection to mark it on; None when there is none."""
        async with self.pool.acquire(timeout=self.acquire_timeout) as connection, connection.transaction():
            message = await take_due(connection, grace)
            yield None if message is None else (message, connection)
