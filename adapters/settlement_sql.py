"""The one write path of a settlement: its row shape, its statements, and the stored record.

Every settlement is written by ``WRITE_SETTLEMENTS``, alone or with others of a batch: the
statement takes one array of ``settlement_write`` rows, so one settlement is a batch of one. The
column lists are generated from ``SettlementRow`` and ``AccumulatorWrite``, the rows' typed shapes,
and a test holds the composite type to them, so the SQL and the Python that fills it cannot drift
apart; the pgbench scripts are checked against the same shapes (tests/unit/test_pgbench_scripts.py).

The engine's full result (traces, per-line split, counters before and after) and the billed
items are kept as one ``record``: MessagePack (about 3.2 KB for an average bill of the synthetic
county), compressed with zstd and a dictionary trained on typical records
(benchmarks/train_record_dictionary.py) to about 440 bytes, in about 6 µs. Reports never need
to look inside it: what they group by is in its own column.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from importlib import resources
from typing import Any, Final

import msgspec
import zstandard

from settlement.models import LineItem, Settlement
from settlement.ports import NewSettlement

# The first byte of a record names its format. A dictionary is part of the format: once records are
# written with it, it never changes; a better one comes as a new version beside it.
_JSON: Final = b"\x00"  # rows migrated from the JSON documents of before 0010
_ZSTD_DICTIONARY_1: Final = b"\x01"  # MessagePack, zstd level 3 with adapters/record_dictionary_v1.bin
_ZSTD_DICTIONARY_2: Final = b"\x02"  # the same with adapters/record_dictionary_v2.bin, trained on the chain's records
_WRITTEN: Final = _ZSTD_DICTIONARY_2
"""The format new records are written in. Dictionary 1 was trained on the records of the engine before the
payer chain; on today's records dictionary 2 compresses to 441 against 576 bytes on average, in 6 against
10 µs (benchmarks/RESULTS.md, 2026-12-03)."""


@functools.cache
def _dictionary(version: bytes) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    dictionary = zstandard.ZstdCompressionDict(
        (resources.files("adapters") / f"record_dictionary_v{version[0]}.bin").read_bytes(),
        dict_type=zstandard.DICT_TYPE_FULLDICT,
    )
    return (
        zstandard.ZstdCompressor(level=3, dict_data=dictionary, write_checksum=False, write_dict_id=False),
        zstandard.ZstdDecompressor(dict_data=dictionary),
    )


class Record(msgspec.Struct, frozen=True, array_like=True):
    """What a settlement keeps beyond its columns: who (masked), what was billed, what the engine decided."""

    person: str
    items: tuple[LineItem, ...]
    result: Settlement


class _JsonRecord(msgspec.Struct, frozen=True):
    person: str
    items: tuple[LineItem, ...]
    result: Settlement


_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(Record)
_json_record_decoder = msgspec.json.Decoder(_JsonRecord)


def record_bytes(record: Record) -> bytes:
    """A record as uncompressed MessagePack (what the dictionary is trained on)."""
    return _record_encoder.encode(record)


def encode_record(record: Record) -> bytes:
    return _WRITTEN + _dictionary(_WRITTEN)[0].compress(_record_encoder.encode(record))


def decode_record(data: bytes) -> Record:
    version = data[:1]
    if version in (_ZSTD_DICTIONARY_2, _ZSTD_DICTIONARY_1):
        return _record_decoder.decode(_dictionary(version)[1].decompress(data[1:]))
    if version == _JSON:
        legacy = _json_record_decoder.decode(data[1:])
        return Record(legacy.person, legacy.items, legacy.result)
    raise ValueError("unknown settlement record format")


# ---------------------------------------------------------------- row shapes


class Jsonb(str):
    """JSON text written to a ``jsonb`` column."""


class AccumulatorWrite(msgspec.Struct, frozen=True, array_like=True):
    """What a settlement's write adds to its settlement row for the person-year: the row's counters and
    caps after it (JSON objects by counter name), and the version they were read at (None: create the
    row). ``claim``: beside the insurer, the answered settle message this settlement books; it is flipped
    to committed with the write, and nothing is written if it is no longer answered
    (adapters/insurer_messages.py)."""

    year: int
    version: int | None
    counters: Jsonb
    caps: Jsonb
    claim: str | None


class SettlementRow(msgspec.Struct, frozen=True, array_like=True):
    """One row of ``settlements`` as the settle path inserts it (docs/storage.md says what each is for)."""

    person_key: bytes
    settlement_id: uuid.UUID
    terminal_id: str
    request_id: str
    clinic_id: str
    clinic_level: str
    visit_type: str
    service_date: dt.date
    booked_on: dt.date
    policy_id: str
    total: int
    eligible: int
    self_pay_first: int
    over_limit: int
    insurance: int
    veteran_subsidy: int
    hardship_aid: int
    out_of_pocket: int
    insured: bool
    veteran_category: str | None
    hardship_tier: str | None
    caps_reached: int
    deductible_taken: int
    unpaid_added: int
    other_funds: Jsonb
    request_hash: bytes
    nonce: bytes | None
    record: bytes
    created_at: dt.datetime


_SQL_TYPES: Final = {
    bytes: "bytea",
    uuid.UUID: "uuid",
    str: "text",
    int: "bigint",
    bool: "boolean",
    dt.date: "date",
    dt.datetime: "timestamptz",
    Jsonb: "jsonb",
}


def sql_types(shape: type[msgspec.Struct]) -> dict[str, str]:
    """Each field of a row shape and its PostgreSQL type (``int | None`` is a nullable bigint)."""
    types = {}
    for field in msgspec.structs.fields(shape):
        python = field.type
        options = getattr(python, "__args__", (python,))
        plain = next(option for option in options if option is not type(None))
        types[field.name] = _SQL_TYPES[plain]
    return types


_ROW = sql_types(SettlementRow)
_ACC = sql_types(AccumulatorWrite)

SETTLEMENT_WRITE: Final = "settlement_write"
"""The composite type a batch is written as (migration 0020): the fields of SettlementRow, then those of
AccumulatorWrite, with these names and types in this order (tests/integration/test_settlement_write_type.py).
asyncpg encodes one array of rows in about half the time it takes over one array per column, and
PostgreSQL reads it a little faster too (benchmarks/RESULTS.md, 2026-12-03)."""
SETTLEMENT_WRITE_FIELDS: Final = {**_ROW, **_ACC}


# One statement for every settlement write. $1 holds the batch, one settlement_write row each, numbered
# in order by the statement (``i``). An accumulator row applies only at the
# version its settlement was decided on (or, with no row yet, only if no other settlement created
# it first), and only if the terminal's request id has no settlement yet (for anyone: a retry whose
# read came before the first copy committed, or the id reused for another patient); a settlement
# is inserted only when its accumulator write applied. The caps only ever rise, so a row keeps the
# highest cap any settlement was decided under and the caps guard (0021) stays strict. A settlement decided under
# the caps the row already holds (a person's every settlement of the year but the first, unless a
# programme changed) keeps them as they are: merging costs PostgreSQL about 25 µs a row, comparing
# well under one, and the gateway writes caps as whole numbers, for which the merge of equal caps is
# the same caps.
#
# Beside the insurer, a settlement books the insurer's answered message (``claim``): the message is
# locked while it is still answered (a sweeper that began to cancel it first wins, and this
# settlement writes nothing), and flipped to committed only with the settlement it books.
#
# Returns each item's number, whether it was written, whether a settlement of its request id stopped
# it, and whether its claim was no longer answered.
def _write_settlements(*, claiming: bool) -> str:
    """WRITE_SETTLEMENTS, or with ``claiming`` the form that also books insurer messages (both take the same
    parameters; a batch with no claim, the local chain's every batch, plans and runs less)."""
    claimable = (
        """claimable AS MATERIALIZED (
    SELECT input.i FROM input
    JOIN insurer_messages m ON m.person_key = input.person_key AND m.message_id = input.claim
    WHERE m.state = 'answered'
    FOR UPDATE OF m
), """
        if claiming
        else ""
    )
    unclaimed = "input.claim IS NOT NULL AND input.i NOT IN (SELECT i FROM claimable)" if claiming else "false"
    committed = (
        """, committed AS (
    UPDATE insurer_messages m SET state = 'committed', settlement_id = inserted.settlement_id, finished_at = now()
    FROM inserted JOIN input USING (terminal_id, request_id)
    WHERE input.claim IS NOT NULL AND m.person_key = input.person_key AND m.message_id = input.claim
      AND m.state = 'answered'
)"""
        if claiming
        else ""
    )
    # Only the claiming form reads the inserted rows back (to book each claim's settlement id).
    returning = "\n    RETURNING person_key, settlement_id, terminal_id, request_id" if claiming else ""
    return f"""
WITH input AS (
    SELECT * FROM unnest($1::{SETTLEMENT_WRITE}[]) WITH ORDINALITY AS w({", ".join(SETTLEMENT_WRITE_FIELDS)}, i)
), {claimable}v AS (
    SELECT input.*, NOT EXISTS (
        SELECT 1 FROM settlements x WHERE x.terminal_id = input.terminal_id AND x.request_id = input.request_id
    ) AS new_request,
    {unclaimed} AS unclaimed
    FROM input
), updated AS (
    UPDATE accumulators a SET
        counters = v.counters,
        caps = CASE WHEN a.caps = v.caps THEN a.caps ELSE greatest_caps(a.caps, v.caps) END,
        version = a.version + 1,
        updated_at = v.created_at
    FROM v
    WHERE v.new_request AND NOT v.unclaimed AND v.version IS NOT NULL
      AND a.person_key = v.person_key AND a.year = v.year AND a.version = v.version
    RETURNING v.i
), created AS (
    INSERT INTO accumulators (person_key, year, counters, caps, version, updated_at)
    SELECT person_key, year, counters, caps, 1, created_at FROM v
    WHERE v.new_request AND NOT v.unclaimed AND v.version IS NULL
    ON CONFLICT (person_key, year) DO NOTHING
    RETURNING person_key, year
), applied AS (
    SELECT i FROM updated
    UNION ALL
    SELECT v.i FROM created JOIN v USING (person_key, year)
    WHERE v.new_request AND NOT v.unclaimed AND v.version IS NULL
), inserted AS (
    INSERT INTO settlements ({", ".join(_ROW)})
    SELECT {", ".join(_ROW)} FROM input
    WHERE input.i IN (SELECT i FROM applied){returning}
){committed}
SELECT v.i, v.i IN (SELECT i FROM applied) AS written, NOT v.new_request AS duplicate, v.unclaimed FROM v
"""


WRITE_SETTLEMENTS: Final = _write_settlements(claiming=False)
WRITE_SETTLEMENTS_CLAIMING: Final = _write_settlements(claiming=True)


# One form for every batch of the local chain, though a batch of updates alone runs no INSERT: a form
# without the INSERT cost PostgreSQL about 5 % less a batch of eight, but each form is a prepared statement
# of its own, and PostgreSQL chooses between its custom and its generic plan on its first executions'
# batch sizes. Under the gateway's load the update-only form kept planning afresh where the one form
# settles on its generic plan, and PostgreSQL's CPU a settlement rose by 4-6 % (benchmarks/RESULTS.md,
# 2026-12-03 (night)).
def write_statement(batch: list[NewSettlement]) -> str:
    """The write for ``batch``: the claiming form when any of its settlements books an insurer's answer."""
    claims = any(new.decision.settlement.insurer is not None for new in batch)
    return WRITE_SETTLEMENTS_CLAIMING if claims else WRITE_SETTLEMENTS


# Everything a settlement's decision needs, for many settlements in one round trip, read-only.
# A request id that already has a settlement comes back with its fingerprint and nonce (a retry or
# a replay); a nonce some other write already spent (request_nonces) marks a replayed request.
READ_FOR_SETTLE: Final = """
SELECT
    (SELECT row(s.settlement_id, s.request_hash, s.nonce) FROM settlements s
      WHERE s.terminal_id = r.terminal_id AND s.request_id = r.request_id LIMIT 1) AS existing,
    (r.digest IS NOT NULL AND EXISTS (SELECT 1 FROM request_nonces n WHERE n.digest = r.digest)) AS nonce_spent,
    EXISTS (SELECT 1 FROM people p WHERE p.person_key = r.person_key) AS person_exists,
    (SELECT coalesce(array_agg(row(m.programme, m.code, m.effective_from, m.struck_off_on)), '{}')
       FROM memberships m WHERE m.person_key = r.person_key) AS memberships,
    (SELECT row(a.counters, a.version) FROM accumulators a
      WHERE a.person_key = r.person_key AND a.year = r.year) AS accumulators
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int[], $5::bytea[]) WITH ORDINALITY
    AS r(terminal_id, request_id, person_key, year, digest, i)
ORDER BY r.i
"""

_LOCKED_PERSON_YEAR: Final = """locked AS (
    INSERT INTO accumulators (person_key, year) VALUES ($1, $2)
    ON CONFLICT (person_key, year) DO UPDATE SET person_key = EXCLUDED.person_key
    RETURNING counters, version
)"""
_MEMBERSHIPS_OF_1: Final = """(SELECT coalesce(array_agg(row(m.programme, m.code, m.effective_from,
                                              m.struck_off_on)), '{}')
          FROM memberships m WHERE m.person_key = $1) AS memberships"""

# The person-year under its row lock (created if missing), for a settlement that lost the race.
LOCK_PERSON_YEAR: Final = f"""
WITH {_LOCKED_PERSON_YEAR}
SELECT locked.*,
       {_MEMBERSHIPS_OF_1}
FROM locked
"""


STORED_COLUMNS: Final = (
    "settlement_id, person_key, terminal_id, request_id, clinic_id, created_at, request_hash, nonce,"
    " reversal_id, record"
)

# ---------------------------------------------------------------- reversal

LOCK_SETTLEMENT: Final = (
    f"SELECT {STORED_COLUMNS} FROM settlements WHERE person_key = $1 AND settlement_id = $2 FOR UPDATE"
)

LOCK_ACCUMULATORS: Final = "SELECT counters FROM accumulators WHERE person_key = $1 AND year = $2 FOR UPDATE"

WRITE_REVERSAL: Final = """
WITH reversal AS (
    INSERT INTO reversals (person_key, reversal_id, settlement_id, terminal_id, request_id, reason, booked_on,
                           request_hash, nonce, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
), accumulators_update AS (
    UPDATE accumulators SET counters = $11::jsonb, version = version + 1, updated_at = $10
    WHERE person_key = $1 AND year = $12
), audit AS (
    INSERT INTO audit_log (occurred_at, actor, action, subject, request_id, details)
    VALUES ($10, $4, 'settlement.reversed', $3::text, $5, $13::jsonb)
), readjudication AS (
    -- The person-year's later bills were settled on counters this bill had moved (a deductible met, a
    -- threshold crossed, a cap reached), and adjustments booked on this bill must be taken back: queue the
    -- person-year for re-adjudication (adapters/readjudication.py). This statement's own snapshot does not
    -- yet see the bill as reversed, hence ``o.settlement_id <> $3``.
    INSERT INTO readjudications (person_key, year, cause_kind, cause_ref, cause, from_date)
    SELECT $1, $12, 'reversal', $2::text, 'settlement ' || $3::text || ' reversed', s.service_date
    FROM settlements s
    WHERE s.person_key = $1 AND s.settlement_id = $3
      AND (EXISTS (SELECT 1 FROM settlements o
                   WHERE o.person_key = $1 AND o.service_date BETWEEN s.service_date AND make_date($12, 12, 31)
                     AND o.settlement_id <> $3 AND o.reversal_id IS NULL)
           OR EXISTS (SELECT 1 FROM adjustments a WHERE a.person_key = $1 AND a.settlement_id = $3))
    RETURNING readjudication_id
)
UPDATE settlements SET reversed_at = $10, reversal_id = $2 WHERE person_key = $1 AND settlement_id = $3
RETURNING (SELECT readjudication_id FROM readjudication)
"""

# A reversal claims its nonce before this read (gateway/http/middleware.py), like every write but a settlement.
READ_FOR_REVERSAL: Final = """
SELECT
    (SELECT row(r.reversal_id, r.request_hash, r.nonce) FROM reversals r
      WHERE r.terminal_id = $1 AND r.request_id = $2 LIMIT 1) AS existing,
    (SELECT row(s.person_key, s.clinic_id) FROM settlements s WHERE s.settlement_id = $3 LIMIT 1) AS settlement
"""

STORED_REVERSAL: Final = """
SELECT r.reversal_id, r.settlement_id, r.terminal_id, r.request_id, r.created_at, r.request_hash, r.nonce, s.record
FROM reversals r JOIN settlements s ON s.person_key = r.person_key AND s.settlement_id = r.settlement_id
WHERE r.terminal_id = $1 AND r.request_id = $2
LIMIT 1
"""


# ---------------------------------------------------------------- filling the statements


def settlement_row(new: NewSettlement) -> SettlementRow:
    decision = new.decision
    settlement = decision.settlement
    return SettlementRow(
        person_key=new.key.person_key,
        settlement_id=new.settlement_id,
        terminal_id=new.key.terminal_id,
        request_id=new.key.request_id,
        clinic_id=new.clinic_id,
        clinic_level=settlement.clinic_level,
        visit_type=settlement.visit_type,
        service_date=settlement.service_date,
        booked_on=new.booked_on,
        policy_id=settlement.policy_version,
        total=settlement.total,
        eligible=settlement.eligible,
        self_pay_first=settlement.self_pay_first,
        over_limit=settlement.over_limit,
        insurance=settlement.insurance,
        veteran_subsidy=settlement.veteran_subsidy,
        hardship_aid=settlement.hardship_aid,
        out_of_pocket=settlement.out_of_pocket,
        insured=decision.status.insured,
        veteran_category=decision.status.veteran_category,
        hardship_tier=decision.status.hardship_tier,
        caps_reached=decision.caps_reached,
        deductible_taken=decision.deductible_taken,
        unpaid_added=decision.unpaid_added,
        other_funds=json_text(decision.other_funds),
        request_hash=new.request_hash,
        nonce=new.key.nonce,
        record=encode_record(Record(new.person, new.items, settlement)),
        created_at=new.created_at,
    )


def accumulator_write(new: NewSettlement) -> AccumulatorWrite:
    decision = new.decision
    return AccumulatorWrite(
        new.key.year,
        new.version,
        json_text(decision.settlement.counters()[1]),
        json_text(decision.caps),
        None if decision.settlement.insurer is None else decision.settlement.insurer.message_id,
    )


_json_encoder = msgspec.json.Encoder()


def json_text(value: dict[str, int]) -> Jsonb:
    return Jsonb(_json_encoder.encode(value).decode())


def counters_from(text: str | None) -> dict[str, int]:
    """A person-year's counters as read from ``accumulators.counters`` (None: no row yet)."""
    return {} if text is None else msgspec.json.decode(text, type=dict[str, int])


def write_arguments(batch: list[NewSettlement]) -> list[Any]:
    """The parameter of WRITE_SETTLEMENTS for ``batch``: one ``settlement_write`` row per settlement, in
    order (the statement numbers them)."""
    return [
        [
            msgspec.structs.astuple(settlement_row(new)) + msgspec.structs.astuple(accumulator_write(new))
            for new in batch
        ]
    ]
