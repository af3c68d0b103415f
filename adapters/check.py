"""Invariant checks over the whole ledger, run by ``medsettle check`` and after tests.

Each check is one query that returns the rows breaking a rule; an empty result
means the rule holds. The checks read only, so they are safe on a live system.
``missing_acknowledged`` checks the other direction, from a client's side: every
settlement or reversal id a terminal saw acknowledged must be stored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from adapters.settlement_sql import counters_from, decode_record


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str


CHECKS: dict[str, str] = {
    "settlement_conserves_money": """
        SELECT settlement_id::text AS id FROM settlements
        WHERE insurance + veteran_subsidy + hardship_aid + fund_amounts_total(other_funds) + out_of_pocket <> total
           OR least(insurance, veteran_subsidy, hardship_aid, out_of_pocket) < 0
           OR NOT fund_amounts_valid(other_funds)""",
    # Migration 0022 checks each inserted settlement's clinic and policy version once per statement, in place of
    # foreign keys; this reads the whole table for a row that slipped past it (a session that ran without triggers).
    "settlement_names_its_clinic_and_policy": """
        SELECT s.settlement_id::text AS id FROM settlements s
        WHERE NOT EXISTS (SELECT 1 FROM clinics c WHERE c.clinic_id = s.clinic_id)
           OR NOT EXISTS (SELECT 1 FROM policy_versions p WHERE p.policy_id = s.policy_id)""",
    "ledger_balances": """
        SELECT settlement_id::text || ' ' || kind AS id FROM ledger_entries
        GROUP BY settlement_id, kind HAVING sum(amount) <> 0""",
    "ledger_matches_settlement": """
        SELECT s.settlement_id::text AS id
        FROM settlements s
        LEFT JOIN LATERAL (
            SELECT sum(amount) FILTER (WHERE account = 'insurance_fund') AS insurance,
                   sum(amount) FILTER (WHERE account = 'priority_care_fund') AS veteran_subsidy,
                   sum(amount) FILTER (WHERE account = 'aid_fund') AS hardship_aid,
                   sum(amount) FILTER (WHERE account = 'patient') AS out_of_pocket,
                   coalesce(jsonb_object_agg(account, amount) FILTER (WHERE account NOT IN
                       ('insurance_fund', 'priority_care_fund', 'aid_fund', 'patient', 'clinic')), '{}') AS others,
                   count(*) AS lines
            FROM ledger_entries l
            WHERE l.person_key = s.person_key AND l.settlement_id = s.settlement_id AND l.kind = 'settlement'
        ) l ON true
        WHERE l.lines <> 5 + (SELECT count(*) FROM jsonb_object_keys(s.other_funds))
           OR l.insurance <> s.insurance OR l.veteran_subsidy <> s.veteran_subsidy
           OR l.hardship_aid <> s.hardship_aid OR l.out_of_pocket <> s.out_of_pocket
           OR l.others <> (SELECT coalesce(jsonb_object_agg(key || '_fund', value::bigint), '{}')
                             FROM jsonb_each_text(s.other_funds))""",
    "reversal_recorded_once": """
        SELECT s.settlement_id::text AS id
        FROM settlements s
        LEFT JOIN LATERAL (
            SELECT count(*) AS lines FROM ledger_entries l
            WHERE l.person_key = s.person_key AND l.settlement_id = s.settlement_id AND l.kind = 'reversal'
        ) l ON true
        LEFT JOIN reversals r ON r.person_key = s.person_key AND r.settlement_id = s.settlement_id
        WHERE (s.reversal_id IS NULL) <> (l.lines = 0) OR (s.reversal_id IS NULL) <> (r.reversal_id IS NULL)
           OR l.lines NOT IN (0, 5 + (SELECT count(*) FROM jsonb_object_keys(s.other_funds)))""",
    "accumulators_equal_ledger": """
        WITH ledger AS (
            SELECT person_key, year,
                   coalesce(sum(amount) FILTER (WHERE account = 'insurance_fund' AND visit_type = 'outpatient'), 0)
                       AS insurance_outpatient_paid,
                   coalesce(sum(amount) FILTER (WHERE account = 'insurance_fund' AND visit_type = 'inpatient'), 0)
                       AS insurance_inpatient_paid,
                   coalesce(sum(amount) FILTER (WHERE account = 'priority_care_fund'), 0) AS subsidy_paid,
                   coalesce(sum(amount) FILTER (WHERE account = 'aid_fund'), 0) AS aid_paid
            FROM ledger_entries GROUP BY person_key, year
        ), deltas AS (
            SELECT person_key, year, sum(deductible) AS deductible, sum(unpaid_eligible) AS unpaid_eligible
            FROM (
                SELECT person_key, extract(year FROM service_date)::int AS year,
                       deductible_taken AS deductible, unpaid_added AS unpaid_eligible
                FROM settlements WHERE reversal_id IS NULL
                UNION ALL
                SELECT person_key, year, coalesce((counters ->> 'outpatient_deductible_used')::bigint, 0),
                       coalesce((counters ->> 'unpaid_eligible')::bigint, 0)
                FROM adjustments
            ) moved GROUP BY 1, 2
        )
        SELECT encode(a.person_key, 'hex') || ' ' || a.year AS id
        FROM accumulators a
        LEFT JOIN ledger l USING (person_key, year)
        LEFT JOIN deltas d USING (person_key, year)
        WHERE coalesce((a.counters ->> 'insurance_outpatient_paid')::bigint, 0)
                  <> coalesce(l.insurance_outpatient_paid, 0)
           OR coalesce((a.counters ->> 'insurance_inpatient_paid')::bigint, 0)
                  <> coalesce(l.insurance_inpatient_paid, 0)
           OR coalesce((a.counters ->> 'subsidy_paid')::bigint, 0) <> coalesce(l.subsidy_paid, 0)
           OR coalesce((a.counters ->> 'aid_paid')::bigint, 0) <> coalesce(l.aid_paid, 0)
           OR coalesce((a.counters ->> 'outpatient_deductible_used')::bigint, 0) <> coalesce(d.deductible, 0)
           OR coalesce((a.counters ->> 'unpaid_eligible')::bigint, 0) <> coalesce(d.unpaid_eligible, 0)""",
    # What finance acts on (adjustment_orders) is, per re-adjudication and fund, the net of the adjustments it
    # booked and of what it carried (the orders a reversal cancelled for it to re-issue, and the parts of
    # reported or waived ones that went with the reversed bill): owed to the patient (payable) positive,
    # overpaid (recovery, overpayment) negative. A cancelled order still counts for the one that wrote it.
    # Only finished re-adjudications are judged: a reversal books its taken-back adjustments under the one it
    # queues, which writes their orders when it runs (pending until then; needs_review until someone looks).
    "orders_match_adjustments": """
        WITH net AS (
            SELECT readjudication_id, fund, sum(amount) AS amount
            FROM (
                SELECT a.readjudication_id, f.fund, f.amount
                FROM adjustments a
                CROSS JOIN LATERAL (
                    VALUES ('insurance', a.insurance), ('veteran_subsidy', a.veteran_subsidy),
                           ('hardship_aid', a.hardship_aid)
                    UNION ALL
                    SELECT key, value::bigint FROM jsonb_each_text(a.other_funds)
                ) f(fund, amount)
                UNION ALL
                SELECT r.readjudication_id, c.key, c.value::bigint
                FROM readjudications r CROSS JOIN LATERAL jsonb_each_text(r.carried) c
            ) moved
            WHERE moved.readjudication_id IN (SELECT readjudication_id FROM readjudications WHERE status = 'done')
            GROUP BY 1, 2 HAVING sum(amount) <> 0
        ), ordered AS (
            SELECT readjudication_id, fund, CASE WHEN kind = 'payable' THEN amount ELSE -amount END AS amount
            FROM adjustment_orders
        )
        SELECT readjudication_id::text || ' ' || fund AS id
        FROM net FULL JOIN ordered USING (readjudication_id, fund)
        WHERE coalesce(net.amount, 0) <> coalesce(ordered.amount, 0)""",
    # Beside the insurer's core (docs/insurer.md): a settle or cancel the insurer confirmed and this side
    # booked names a settlement that exists (settled, or reversed for a cancel); what the insurer paid on
    # it is what the settlement booked for those funds.
    "insurer_messages_booked": """
        SELECT m.message_id AS id
        FROM insurer_messages m
        LEFT JOIN settlements s ON s.person_key = m.person_key AND s.settlement_id = m.settlement_id
        WHERE m.state = 'committed' AND (
            s.settlement_id IS NULL
            OR (m.kind = 'cancel' AND s.reversal_id IS NULL)
            OR (m.kind = 'settle' AND EXISTS (
                SELECT 1 FROM jsonb_each_text(m.paid) f
                WHERE f.value::bigint <> CASE f.key WHEN 'insurance' THEN s.insurance
                                                    WHEN 'veteran_subsidy' THEN s.veteran_subsidy
                                                    WHEN 'hardship_aid' THEN s.hardship_aid
                                                    ELSE coalesce((s.other_funds ->> f.key)::bigint, 0) END)))""",
    "accumulators_within_caps": """
        SELECT encode(person_key, 'hex') || ' ' || year AS id FROM accumulators
        WHERE NOT counters_within_caps(counters, caps)""",
    "one_settlement_per_request": """
        SELECT terminal_id || ' ' || request_id AS id FROM settlements
        GROUP BY terminal_id, request_id HAVING count(*) > 1""",
    # The daily statement (adapters/finance.py) sums ledger lines by booking day, clinic and fund; it must
    # agree with the settlements booked and reversed that day, attributed to the settlement's own clinic.
    "daily_statement_matches_ledger": """
        WITH ledger AS (
            SELECT booked_on, clinic_id, account, sum(amount) AS amount FROM ledger_entries
            WHERE account <> 'clinic' GROUP BY 1, 2, 3
        ), booked AS (
            SELECT l.booked_on, s.clinic_id, f.account,
                   sum(CASE WHEN l.kind = 'settlement' THEN f.amount ELSE -f.amount END) AS amount
            FROM ledger_entries l
            JOIN settlements s ON s.person_key = l.person_key AND s.settlement_id = l.settlement_id
            CROSS JOIN LATERAL (
                VALUES ('insurance_fund', s.insurance), ('priority_care_fund', s.veteran_subsidy),
                       ('aid_fund', s.hardship_aid), ('patient', s.out_of_pocket)
                UNION ALL
                SELECT key || '_fund', value::bigint FROM jsonb_each_text(s.other_funds)
            ) f(account, amount)
            WHERE l.account = 'clinic' GROUP BY 1, 2, 3
            UNION ALL
            SELECT a.booked_on, a.clinic_id, f.account, sum(f.amount)
            FROM adjustments a
            CROSS JOIN LATERAL (
                VALUES ('insurance_fund', a.insurance), ('priority_care_fund', a.veteran_subsidy),
                       ('aid_fund', a.hardship_aid), ('patient', a.out_of_pocket)
                UNION ALL
                SELECT key || '_fund', value::bigint FROM jsonb_each_text(a.other_funds)
            ) f(account, amount)
            GROUP BY 1, 2, 3
        ), booked_sum AS (
            SELECT booked_on, clinic_id, account, sum(amount) AS amount FROM booked GROUP BY 1, 2, 3
        )
        SELECT booked_on::text || ' ' || clinic_id || ' ' || account AS id
        FROM ledger FULL JOIN booked_sum USING (booked_on, clinic_id, account)
        WHERE coalesce(ledger.amount, 0) <> coalesce(booked_sum.amount, 0)""",
}


async def check_invariants(connection: asyncpg.Connection, *, limit: int = 20) -> list[Violation]:
    """Run every check in one repeatable-read snapshot, so a live system gives a consistent answer."""
    violations = []
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        for rule, query in CHECKS.items():
            for row in await connection.fetch(f"{query} LIMIT {int(limit)}"):
                violations.append(Violation(rule, row["id"]))
        violations.extend((await _counters_against_records(connection))[:limit])
    return violations


# Every person-year's counters, with the records of its settlements not reversed, a batch at a time.
_COUNTERS_AND_RECORDS = """
    SELECT a.person_key, a.year, a.counters,
           coalesce((SELECT array_agg(s.record) FROM settlements s
                      WHERE s.person_key = a.person_key
                        AND s.service_date BETWEEN make_date(a.year, 1, 1) AND make_date(a.year, 12, 31)
                        AND s.reversal_id IS NULL), '{}') AS records,
           coalesce((SELECT array_agg(j.counters) FROM adjustments j
                      WHERE j.person_key = a.person_key AND j.year = a.year), '{}') AS adjusted
    FROM accumulators a
    WHERE (a.person_key, a.year) > ($1, $2)
    ORDER BY a.person_key, a.year
    LIMIT 500"""


async def _counters_against_records(connection: asyncpg.Connection) -> list[Violation]:
    """``counters_equal_settlements``: every counter of every person-year, whatever the policy names it,
    is exactly the sum of what the year's settlements not reversed added to it (each settlement's record
    holds its counters before and after) and what the adjustments booked on the year moved it by. With
    ``ledger_matches_settlement`` and the engine's rule that a
    step's paid counter grows by what it paid, the counters are the ledger's, fund by fund."""
    violations = []
    after: tuple[bytes, int] = (b"", 0)
    while True:
        rows = await connection.fetch(_COUNTERS_AND_RECORDS, *after)
        if not rows:
            return violations
        for row in rows:
            expected: dict[str, int] = {}
            moves = [decode_record(record).result.counter_deltas() for record in row["records"]]
            moves += [counters_from(adjusted) for adjusted in row["adjusted"]]
            for deltas in moves:
                for name, delta in deltas.items():
                    expected[name] = expected.get(name, 0) + delta
            stored = {name: value for name, value in counters_from(row["counters"]).items() if value}
            if stored != {name: value for name, value in expected.items() if value}:
                violations.append(
                    Violation("counters_equal_settlements", f"{bytes(row['person_key']).hex()} {row['year']}")
                )
        after = (rows[-1]["person_key"], rows[-1]["year"])


# What a client saw acknowledged must be in the database: an id is found when it names a stored
# settlement or reversal (both are random UUIDs, so the two sets never share an id).
_MISSING_ACKNOWLEDGED = """
    SELECT id::text AS id FROM unnest($1::uuid[]) AS acknowledged(id)
    WHERE NOT EXISTS (SELECT 1 FROM settlements s WHERE s.settlement_id = acknowledged.id)
      AND NOT EXISTS (SELECT 1 FROM reversals r WHERE r.reversal_id = acknowledged.id)
    ORDER BY 1"""


def parse_acknowledged(text: str) -> list[uuid.UUID]:
    """Ids from a file: a JSON list, or one id per line (blank lines and ``#`` comments skipped).

    Raises ValueError naming the first entry that is not a UUID.
    """
    stripped = text.strip()
    if stripped.startswith("["):
        entries = [str(entry) for entry in json.loads(stripped)]
    else:
        entries = [line.strip() for line in text.splitlines()]
        entries = [entry for entry in entries if entry and not entry.startswith("#")]
    ids = []
    for entry in entries:
        try:
            ids.append(uuid.UUID(entry))
        except ValueError:
            raise ValueError(f"not a settlement or reversal id: {entry!r}") from None
    return ids


async def missing_acknowledged(
    connection: asyncpg.Connection, acknowledged: Iterable[uuid.UUID | str]
) -> list[Violation]:
    """The acknowledged settlement and reversal ids that the database does not hold: each one is an
    answer a terminal printed for a patient and the ledger then lost. Empty when nothing was lost."""
    ids = sorted({uuid.UUID(str(value)) for value in acknowledged})
    rows = await connection.fetch(_MISSING_ACKNOWLEDGED, ids)
    return [Violation("acknowledged_but_missing", row["id"]) for row in rows]
