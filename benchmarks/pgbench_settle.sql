-- The database ceiling: the writes of one settlement as an interactive transaction, for pgbench.
--
--   pgbench -n -M prepared -c 8 -j 2 -T 15 -f benchmarks/pgbench_settle.sql \
--       -D people=20000 -D terminals=116 -D payloads=500 -D year=2026 -D policy=default-2026 DBURL
--
-- Run by benchmarks/ceilings.py in a throw-away copy of the seeded, migrated database, after
-- benchmarks/pgbench_setup.sql (bench_people, bench_terminals, bench_payload). One
-- transaction per settlement, as the gateway's settle path writes it (adapters/store.py):
-- lock (or create) the person-year accumulator row; insert the settlement, its five
-- double-entry ledger lines, the audit row and the idempotency record; update the
-- accumulators; COMMIT, durable (synchronous_commit stays on). A random person per
-- transaction, so row locks rarely meet, as with real checkouts across a county.
--
-- The caps written with a new accumulator row are far above anything a run can reach, so
-- a long run never trips them; the CHECK constraints are still evaluated on every write.
-- Amounts: a bill of 20 to 600 yuan, 90 % eligible; insurance 60 % of that, the subsidy
-- 10 %, aid 5 %. Documents are real ones from the gateway's run (bench_payload).

\set pid random(1, :people)
\set tid random(1, :terminals)
\set payload random(1, :payloads)
\set total random(2000, 60000)
\set eligible :total * 9 / 10
\set insurance :eligible * 6 / 10
\set subsidy :eligible / 10
\set aid :eligible / 20
\set oop :total - :insurance - :subsidy - :aid
\set clinic_line -1 * :total
\set unpaid :eligible - :insurance - :subsidy

BEGIN;

WITH acc AS (
    INSERT INTO accumulators (person_key, year, outpatient_deductible_cap, insurance_outpatient_cap,
                              insurance_inpatient_cap, subsidy_cap, aid_cap)
    SELECT person_key, :year::int, 1000000000000, 1000000000000, 1000000000000, 1000000000000, 1000000000000
    FROM bench_people WHERE n = :pid::int
    ON CONFLICT (person_key, year) DO UPDATE SET person_key = EXCLUDED.person_key
    RETURNING person_key, outpatient_deductible_used, insurance_outpatient_paid, insurance_inpatient_paid,
              subsidy_paid, aid_paid, unpaid_eligible, version
)
SELECT acc.person_key AS pk, acc.version AS version, t.terminal_id AS term, t.clinic_id AS clinic,
       t.level AS level, gen_random_uuid() AS sid
FROM acc CROSS JOIN bench_terminals t WHERE t.n = :tid::int
\gset

INSERT INTO settlements (person_key, settlement_id, terminal_id, request_id, clinic_id, clinic_level, visit_type,
                         service_date, policy_id, total, eligible, insurance, veteran_subsidy, hardship_aid,
                         out_of_pocket, request, result, created_at)
SELECT :pk::bytea, :sid::uuid, :term::text, :sid::text, :clinic::text, :level::text, 'inpatient', current_date,
       :policy::text, :total::bigint, :eligible::bigint, :insurance::bigint, :subsidy::bigint, :aid::bigint,
       :oop::bigint, request, result, now()
FROM bench_payload WHERE n = :payload::int;

INSERT INTO ledger_entries (person_key, settlement_id, kind, account, amount, clinic_id, visit_type, year, booked_on,
                            created_at)
VALUES (:pk::bytea, :sid::uuid, 'settlement', 'insurance_fund', :insurance::bigint, :clinic::text, 'inpatient',
        :year::int, current_date, now()),
       (:pk::bytea, :sid::uuid, 'settlement', 'priority_care_fund', :subsidy::bigint, :clinic::text, 'inpatient',
        :year::int, current_date, now()),
       (:pk::bytea, :sid::uuid, 'settlement', 'aid_fund', :aid::bigint, :clinic::text, 'inpatient',
        :year::int, current_date, now()),
       (:pk::bytea, :sid::uuid, 'settlement', 'patient', :oop::bigint, :clinic::text, 'inpatient',
        :year::int, current_date, now()),
       (:pk::bytea, :sid::uuid, 'settlement', 'clinic', :clinic_line::bigint, :clinic::text, 'inpatient',
        :year::int, current_date, now());

INSERT INTO audit_log (occurred_at, actor, action, subject, request_id, details)
SELECT now(), :term::text, 'settlement.created', :sid::text, :sid::text, details
FROM bench_payload WHERE n = :payload::int;

INSERT INTO idempotency_keys (terminal_id, request_id, operation, request_hash, status, response, created_at)
SELECT :term::text, :sid::text, 'settle', sha256(convert_to(:sid::text, 'UTF8')), 200, response, now()
FROM bench_payload WHERE n = :payload::int;

-- The request's nonce, claimed for every gateway process (the gateway does it in its read).
INSERT INTO request_nonces (digest, expires_at)
VALUES (substr(sha256(convert_to(:sid::text, 'UTF8')), 1, 16), now() + interval '5 minutes');

UPDATE accumulators SET
    insurance_inpatient_paid = insurance_inpatient_paid + :insurance::bigint,
    subsidy_paid = subsidy_paid + :subsidy::bigint,
    aid_paid = aid_paid + :aid::bigint,
    unpaid_eligible = unpaid_eligible + :unpaid::bigint,
    version = version + 1,
    updated_at = now()
WHERE person_key = :pk::bytea AND year = :year::int;

COMMIT;
