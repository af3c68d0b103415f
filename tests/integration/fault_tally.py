"""What a fault test sent, what it saw acknowledged, and what the database holds afterwards.

Every fault test ends with ``settle_up``: the acknowledged ids it collected must all be
stored (``adapters.check.missing_acknowledged``), no request id may have two settlements or
two reversals, and every invariant of ``medsettle check`` must hold. The counts are printed
in one line per scenario, so a run can be quoted:

    [kill at settle.after_commit] requests 1, attempts 2, acknowledged 1, lost 0, double-counted 0,
    5xx 0, dropped 1 (statuses: dropped 1, 200 1)
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from adapters.check import Violation, check_invariants, missing_acknowledged
from tests.integration.conftest import bill


@dataclass
class Tally:
    scenario: str
    request_ids: set[tuple[str, str]] = field(default_factory=set)  # (terminal, request id) of money requests
    attempts: int = 0  # HTTP sends, retries included
    acknowledged: set[str] = field(default_factory=set)  # settlement and reversal ids answered 200/201
    statuses: Counter[str] = field(default_factory=Counter)  # "201", "503 deadline_exceeded", "dropped"

    def sent(self, terminal: str, body: dict[str, Any]) -> None:
        self.request_ids.add((terminal, str(body["request_id"])))
        self.attempts += 1

    def answered(self, status: int, body: Any) -> str | None:
        """Record an answer; the settlement or reversal id it acknowledges, if it does."""
        code = body.get("code") if isinstance(body, dict) else None
        self.statuses[f"{status} {code}" if code else str(status)] += 1
        if status in (200, 201) and isinstance(body, dict):
            acknowledged = body.get("reversal_id") or body.get("settlement_id")
            if acknowledged:
                self.acknowledged.add(str(acknowledged))
                return str(acknowledged)
        return None

    def dropped(self) -> None:
        """The connection ended with no answer: the outcome is unknown to the terminal."""
        self.statuses["dropped"] += 1

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status.startswith("5"))

    @property
    def internal_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status.split()[0] == "500")


@dataclass(frozen=True)
class Outcome:
    lost: list[Violation]
    double_counted: list[str]
    violations: list[Violation]


_DOUBLE_COUNTED = """
    WITH asked(terminal_id, request_id) AS (SELECT * FROM unnest($1::text[], $2::text[]))
    SELECT 'settlement ' || terminal_id || ' ' || request_id AS id
    FROM settlements JOIN asked USING (terminal_id, request_id) GROUP BY terminal_id, request_id HAVING count(*) > 1
    UNION ALL
    SELECT 'reversal ' || terminal_id || ' ' || request_id
    FROM reversals JOIN asked USING (terminal_id, request_id) GROUP BY terminal_id, request_id HAVING count(*) > 1
"""


async def settle_up(pool: asyncpg.Pool, tally: Tally, *extra_requests: Iterable[tuple[str, str]]) -> Outcome:
    """Compare what the terminals saw with the database, print the scenario's counts, return the findings."""
    asked = sorted(tally.request_ids.union(*extra_requests))
    async with pool.acquire() as connection:
        lost = await missing_acknowledged(connection, tally.acknowledged)
        double = await connection.fetch(
            _DOUBLE_COUNTED, [terminal for terminal, _ in asked], [request for _, request in asked]
        )
        violations = await check_invariants(connection)
    statuses = ", ".join(f"{status} {count}" for status, count in sorted(tally.statuses.items()))
    print(
        f"[{tally.scenario}] requests {len(asked)}, attempts {tally.attempts}, "
        f"acknowledged {len(tally.acknowledged)}, lost {len(lost)}, double-counted {len(double)}, "
        f"5xx {tally.server_errors} (500: {tally.internal_errors}), dropped {tally.statuses['dropped']}"
        f" (statuses: {statuses})"
    )
    return Outcome(lost, [row["id"] for row in double], violations)


# ---------------------------------------------------------------- what the scenarios send and find


def programmes(rng: random.Random) -> list[tuple[str, str]]:
    chosen = [("insurance", "resident")]
    if rng.random() < 0.5:
        chosen.append(("veteran_subsidy", rng.choice(["priority_care", "disabled_veteran"])))
    if rng.random() < 0.6:
        chosen.append(("hardship_aid", rng.choice(["destitute", "minimum_allowance", "marginal", "low_income"])))
    return chosen


def random_bill(rng: random.Random, person: str, label: str) -> dict[str, Any]:
    items = [(rng.choice("AAABC"), rng.randrange(500, 400_000)) for _ in range(rng.randint(1, 12))]
    return bill(
        person,
        *items,
        visit_type=rng.choice(["outpatient", "inpatient"]),
        request_id=f"{label}-{uuid.uuid4().hex[:12]}",  # unique per run; not a schedule choice
    )


async def stored(pool: asyncpg.Pool, operation: str, terminal: str, request_id: str) -> list[Any]:
    """The settlements (or reversals) stored for the request id, each with its ledger line counts."""
    table = "settlements" if operation == "settle" else "reversals"
    identifier = "settlement_id" if operation == "settle" else "reversal_id"
    async with pool.acquire() as connection:
        return await connection.fetch(
            f"""SELECT t.{identifier}::text AS id, t.settlement_id::text AS settlement_id,
                       (SELECT count(*) FROM ledger_entries l WHERE l.settlement_id = t.settlement_id
                          AND l.kind = 'settlement') AS settlement_lines,
                       (SELECT count(*) FROM ledger_entries l WHERE l.settlement_id = t.settlement_id
                          AND l.kind = 'reversal') AS reversal_lines
                FROM {table} t WHERE t.terminal_id = $1 AND t.request_id = $2""",
            terminal,
            request_id,
        )


def assert_whole(rows: list[Any], operation: str) -> None:
    """No partial settlement: all five ledger lines of each written part, or none."""
    for row in rows:
        assert row["settlement_lines"] == 5, dict(row)
        assert row["reversal_lines"] == (5 if operation == "reverse" else 0), dict(row)
