"""The record of every message to the insurer's core (migration 0017), kept so no remote outcome is lost.

A settle or cancel is recorded (``MessageLog.record``) in a committed transaction before it is sent, with a
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
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, Literal

import asyncpg
import msgspec

from adapters.batching import Coalescer

MessageKind = Literal["settle", "cancel"]
OPEN_STATES: Final = ("sent", "answered", "reversing", "cancelling")

_json = msgspec.json.Encoder()

# The interface's message id: institution code (12) + yyyyMMddHHmmss (China time) + 4-digit sequence.
_NEW_ID: Final = """$1 || to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDDHH24MISS')
    || lpad(nextval('insurer_message_sequence')::text, 4, '0')"""


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A settle or cancel about to be sent, as ``record`` writes it."""

    institution_code: str
    person_key: bytes
    kind: MessageKind
    transaction_code: str
    terminal_id: str
    request_id: str
    visit_id: str
    clinic_id: str
    service_date: dt.date
    settlement_id: uuid.UUID | None = None
    insurer_settlement_id: str | None = None
    request: dict[str, Any] | None = None


# Many messages recorded in one statement and one commit (``MessageLog``'s batcher). A message whose request
# already has one open of its kind is skipped (``insurer_messages_one_open``) and answered None; the others
# come back by request, which is unique within a batch.
_RECORD_MANY: Final = f"""
INSERT INTO insurer_messages (message_id, person_key, kind, transaction_code, terminal_id, request_id, clinic_id,
                              service_date, settlement_id, insurer_settlement_id, request, visit_id, state)
SELECT {_NEW_ID.replace("$1", "r.institution_code")}, r.person_key, r.kind, r.transaction_code, r.terminal_id,
       r.request_id, r.clinic_id, r.service_date, r.settlement_id, r.insurer_settlement_id, r.request::jsonb,
       r.visit_id, 'sent'
FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::date[],
            $9::uuid[], $10::text[], $11::text[], $12::text[])
    AS r(institution_code, person_key, kind, transaction_code, terminal_id, request_id, clinic_id, service_date,
         settlement_id, insurer_settlement_id, request, visit_id)
ON CONFLICT (person_key, terminal_id, request_id, kind) WHERE state IN ('sent', 'answered', 'reversing', 'cancelling')
DO NOTHING
RETURNING person_key, terminal_id, request_id, kind, message_id
"""

# Settle answers recorded in one statement and one commit, each only if its message is still ``sent``.
#
# The commit does not wait for its WAL flush (synchronous_commit off, for this transaction alone). What that
# risks is only a PostgreSQL crash losing the answer, never money: the message is then ``sent`` again, an
# unknown outcome, and is reversed by its id like any other (a retry, or the sweeper). The settlement that
# books the answer commits synchronously, and WAL is flushed in order, so a booked answer is never lost.
_ANSWERED_MANY: Final = """
WITH no_flush_wait AS (SELECT set_config('synchronous_commit', 'off', true) AS setting)
UPDATE insurer_messages m SET state = 'answered', insurer_settlement_id = a.insurer_settlement_id,
       paid = a.paid::jsonb, answered_at = now()
FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[]) AS a(person_key, message_id, insurer_settlement_id, paid),
     no_flush_wait
WHERE m.person_key = a.person_key AND m.message_id = a.message_id AND m.state = 'sent'
  AND no_flush_wait.setting = 'off'
RETURNING m.message_id
"""


class Answered(msgspec.Struct, frozen=True):
    """The insurer settled message ``message_id`` as ``insurer_settlement_id``, paying ``paid`` by fund code."""

    person_key: bytes
    message_id: str
    insurer_settlement_id: str
    paid: dict[str, int]


async def record_many(connection: asyncpg.Connection, messages: list[NewMessage]) -> list[str | None]:
    """Record messages about to be sent, in one statement: each one's id, or None when its request already
    has an open message of its kind (a concurrent copy is in flight: the caller must not send)."""
    rows = await connection.fetch(
        _RECORD_MANY,
        *(
            [getattr(message, field) for message in messages]
            for field in (
                "institution_code", "person_key", "kind", "transaction_code", "terminal_id", "request_id",
                "clinic_id", "service_date", "settlement_id", "insurer_settlement_id",
            )
        ),
        [None if message.request is None else _json.encode(message.request).decode() for message in messages],
        [message.visit_id for message in messages],
    )  # fmt: skip
    made = {
        (bytes(row["person_key"]), row["terminal_id"], row["request_id"], row["kind"]): row["message_id"]
        for row in rows
    }
    return [made.get((m.person_key, m.terminal_id, m.request_id, m.kind)) for m in messages]


async def answered_many(connection: asyncpg.Connection, answers: list[Answered]) -> list[bool]:
    """Record settle answers in one statement: for each, whether its message was still ``sent`` (if not, the
    sweeper has begun to reverse it, and the answer must not be booked)."""
    rows = await connection.fetch(
        _ANSWERED_MANY,
        [answer.person_key for answer in answers],
        [answer.message_id for answer in answers],
        [answer.insurer_settlement_id for answer in answers],
        [_json.encode(answer.paid).decode() for answer in answers],
    )
    moved = {row["message_id"] for row in rows}
    return [answer.message_id in moved for answer in answers]


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
    """The message record over the gateway's pool: what gateway/insurer.py reads and writes.

    New messages and settle answers, the two writes every settlement beside the insurer makes and must
    commit before it goes on, are coalesced under load like the settlement writes (adapters/batching.py):
    concurrent ones share a statement and a commit."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        acquire_timeout: float = 5.0,
        *,
        batch_max: int = 1,
        batch_lanes: int = 2,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout
        # One message per request and kind in a batch: the second would be skipped by the first.
        self._records: Coalescer[NewMessage, str | None] = Coalescer(
            self._record_batch,
            max_batch=batch_max,
            lanes=batch_lanes,
            keys=lambda message: ((message.person_key, message.terminal_id, message.request_id, message.kind),),
            name="insurer-record",
            on_batch=on_batch,
        )
        self._answers: Coalescer[Answered, bool] = Coalescer(
            self._answered_batch,
            max_batch=batch_max,
            lanes=batch_lanes,
            keys=lambda answer: (answer.message_id,),
            name="insurer-answered",
            on_batch=on_batch,
        )

    def start(self) -> None:
        self._records.start()
        self._answers.start()

    async def stop(self) -> None:
        await self._answers.stop()
        await self._records.stop()

    async def _record_batch(self, messages: list[NewMessage]) -> list[str | None]:
        async with self.pool.acquire(timeout=self.acquire_timeout) as connection:
            return await record_many(connection, messages)

    async def _answered_batch(self, answers: list[Answered]) -> list[bool]:
        async with self.pool.acquire(timeout=self.acquire_timeout) as connection:
            return await answered_many(connection, answers)

    async def new_message_id(self, institution_code: str) -> str:
        async with self.pool.acquire(timeout=self.acquire_timeout) as connection:
            return await new_message_id(connection, institution_code)

    async def record(self, **fields: Any) -> str | None:
        """Record a message about to be sent (``NewMessage``'s fields) and return its id; None when its
        request already has an open message of this kind."""
        return await self._records.submit(NewMessage(**fields))

    async def answered(self, answer: Answered) -> bool:
        """Record a settle's answer: whether its message was still ``sent`` (else the sweeper has it)."""
        return await self._answers.submit(answer)

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
