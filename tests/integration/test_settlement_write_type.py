"""The settle write's composite type (migration 0020) is the Python row shapes the gateway fills it from.

WRITE_SETTLEMENTS takes a batch as one ``settlement_write[]`` parameter, each element a tuple of a
SettlementRow's fields followed by an AccumulatorWrite's. PostgreSQL matches a tuple to the type by
position, so a field added, removed or moved on one side only would put values in the wrong columns.
"""

from __future__ import annotations

import pytest

from adapters.settlement_sql import SETTLEMENT_WRITE, SETTLEMENT_WRITE_FIELDS

pytestmark = pytest.mark.integration

_ATTRIBUTES = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type
FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid
WHERE t.typname = $1 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_SPELLED: dict[str, str] = {"timestamptz": "timestamp with time zone"}


async def test_the_type_has_the_row_shapes_fields_in_order(pool):
    async with pool.acquire() as connection:
        attributes = [(row["attname"], row["type"]) for row in await connection.fetch(_ATTRIBUTES, SETTLEMENT_WRITE)]
    expected = [(name, _SPELLED.get(sql, sql)) for name, sql in SETTLEMENT_WRITE_FIELDS.items()]
    assert attributes == expected
