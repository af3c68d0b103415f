-- The settle write (adapters/settlement_sql.py, WRITE_SETTLEMENTS) takes its batch as one array of this
-- type, a row per settlement, instead of one array per column.
--
-- asyncpg checks every element of an array parameter against the collections ABCs before it encodes it:
-- 34 arrays of a batch's values cost the gateway about 15-25 µs of CPU per settlement, about half of it
-- saved by one array of rows; PostgreSQL reads the rows a little faster than it unnests the columns
-- (benchmarks/RESULTS.md, 2026-12-03, issue 15).
--
-- The attributes are the fields of SettlementRow, then those of AccumulatorWrite, with the same names and
-- types in the same order; tests/integration/test_settlement_write_type.py fails when they drift apart. A change
-- of either shape comes with a migration that alters this type.
CREATE TYPE settlement_write AS (
    person_key        bytea,
    settlement_id     uuid,
    terminal_id       text,
    request_id        text,
    clinic_id         text,
    clinic_level      text,
    visit_type        text,
    service_date      date,
    booked_on         date,
    policy_id         text,
    total             bigint,
    eligible          bigint,
    self_pay_first    bigint,
    over_limit        bigint,
    insurance         bigint,
    veteran_subsidy   bigint,
    hardship_aid      bigint,
    out_of_pocket     bigint,
    insured           boolean,
    veteran_category  text,
    hardship_tier     text,
    caps_reached      bigint,
    deductible_taken  bigint,
    unpaid_added      bigint,
    other_funds       jsonb,
    request_hash      bytea,
    nonce             bytea,
    record            bytea,
    created_at        timestamptz,
    year              bigint,
    version           bigint,
    counters          jsonb,
    caps              jsonb,
    claim             text
);
