-- The functions the money CHECKs and the settle write call (0012) keep their rules, in PL/pgSQL.
--
-- As LANGUAGE sql functions with a FROM clause they could not be inlined, and PostgreSQL (16) parsed and
-- planned each one's body again in every statement that called it: the settle write called five of them
-- (counters_within_caps in the accumulator CHECK, greatest_caps in the update, fund_amounts_valid and
-- fund_amounts_total twice in the settlement CHECKs), which was over a third of PostgreSQL's CPU per
-- settlement (benchmarks/RESULTS.md, 2026-12-03, issue 14). A PL/pgSQL function keeps its query's plan
-- for the session, so only the first call of a connection plans it.
--
-- Each body is the same SELECT as before, as a scalar subquery, so each returns what it returned and
-- refuses (or raises on) what it did. ``other_funds`` is '{}' whenever the chain has no fund beyond the
-- three named ones (the default chain's every settlement): for it the two fund functions answer at once,
-- with what the query would have given (valid; a total of 0). Replacing a body keeps the function, so
-- the constraints that name it stay as they are and no row is checked again. Each function still reads
-- only its arguments (IMMUTABLE), so it runs on any Citus shard as before (deploy/citus).

CREATE OR REPLACE FUNCTION counters_within_caps(counters jsonb, caps jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN (
        SELECT jsonb_typeof(counters) = 'object' AND jsonb_typeof(caps) = 'object' AND coalesce(bool_and(
            jsonb_typeof(c.value) = 'number' AND (c.value)::bigint >= 0
            AND (caps -> c.key IS NULL OR (c.value)::bigint <= (caps ->> c.key)::bigint)
        ), true)
        FROM jsonb_each(counters) c
    );
END
$$;

-- The higher of two caps per counter: caps only ever rise within a person-year.
CREATE OR REPLACE FUNCTION greatest_caps(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN (
        SELECT coalesce(jsonb_object_agg(key, cap), '{}'::jsonb) FROM (
            SELECT key, max(value::bigint) AS cap
            FROM (SELECT * FROM jsonb_each_text(a) UNION ALL SELECT * FROM jsonb_each_text(b)) both_caps
            GROUP BY key
        ) merged
    );
END
$$;

CREATE OR REPLACE FUNCTION fund_amounts_valid(funds jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF funds = '{}' THEN
        RETURN true;
    END IF;
    RETURN (
        SELECT jsonb_typeof(funds) = 'object' AND coalesce(bool_and(
            jsonb_typeof(f.value) = 'number' AND (f.value)::bigint >= 0 AND f.key ~ '^[a-z][a-z0-9_]{0,39}$'
            AND f.key NOT IN ('insurance', 'veteran_subsidy', 'hardship_aid')
        ), true)
        FROM jsonb_each(funds) f
    );
END
$$;

CREATE OR REPLACE FUNCTION fund_amounts_total(funds jsonb) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF funds = '{}' THEN
        RETURN 0;
    END IF;
    RETURN (SELECT coalesce(sum(value::bigint), 0)::bigint FROM jsonb_each_text(funds));
END
$$;
