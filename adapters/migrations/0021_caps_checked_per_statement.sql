-- No named counter past its cap or below zero: checked once per statement over the rows it wrote, not per row.
--
-- The CHECK of 0012 (accumulators_counters_within_caps) called counters_within_caps for every row written,
-- and each call ran its PL/pgSQL body's query: about 30 µs of PostgreSQL a row in UPDATEs of seven rows, the
-- settle write's batch, and about 50 in an INSERT ... ON CONFLICT DO UPDATE, which checks the proposed row
-- and then the updated one (benchmarks/RESULTS.md, 2026-12-03 (evening), issue 15). Two statement-level
-- triggers now read the rows an INSERT or an UPDATE wrote (its transition table) in one query, about 8-14 µs
-- a row there, and refuse the statement as the CHECK did: SQLSTATE 23514 (check_violation) naming the
-- constraint accumulators_counters_within_caps, so nothing of the statement is written, and the callers that
-- tell a broken cap from other errors by that name (re-adjudication) still do.
--
-- The rule is counters_within_caps's, row for row, by the same query: counters and caps are JSON objects;
-- every counter is a number, at least 0 as a bigint, and at most its cap where the caps name one (a cap of
-- JSON null holds nothing, as bool_and ignored it). A value that is no bigint raises the cast's error, as
-- before. ``medsettle check`` still looks for rows that break it with counters_within_caps.
--
-- Like every trigger (the version trigger of 0008, the append-only ones), these do not fire for a session
-- with session_replication_role = replica. They read only the statement's own rows, so they are safe per
-- shard on Citus (deploy/citus).

CREATE FUNCTION accumulators_counters_within_caps() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- counters_within_caps's query, for each row written (a subquery rather than a call: the call is what cost).
    IF EXISTS (
        SELECT FROM written w WHERE NOT (
            SELECT jsonb_typeof(w.counters) = 'object' AND jsonb_typeof(w.caps) = 'object' AND coalesce(bool_and(
                jsonb_typeof(c.value) = 'number' AND (c.value)::bigint >= 0
                AND (w.caps -> c.key IS NULL OR (c.value)::bigint <= (w.caps ->> c.key)::bigint)
            ), true)
            FROM jsonb_each(w.counters) c
        )
    ) THEN
        RAISE EXCEPTION 'new row for relation "accumulators" violates check constraint "accumulators_counters_within_caps"'
            USING ERRCODE = 'check_violation', TABLE = 'accumulators', CONSTRAINT = 'accumulators_counters_within_caps',
                  DETAIL = 'A named counter is past its cap, below zero or not a number.';
    END IF;
    RETURN NULL;
END
$$;

-- A trigger with a transition table has one event, so one for each; an INSERT ... ON CONFLICT DO UPDATE fires
-- both, each with the rows it inserted or updated.
CREATE TRIGGER accumulators_counters_within_caps_inserted AFTER INSERT ON accumulators
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION accumulators_counters_within_caps();
CREATE TRIGGER accumulators_counters_within_caps_updated AFTER UPDATE ON accumulators
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION accumulators_counters_within_caps();

ALTER TABLE accumulators DROP CONSTRAINT accumulators_counters_within_caps;
