-- Helpers for the pgbench settle scripts (benchmarks/pgbench_settle*.sql).
--
-- benchmarks/ceilings.py runs this in a throw-away copy of the seeded, migrated database,
-- never in the database the gateway settles in: the ledger is append-only, so pgbench's
-- rows could not be removed again, and the gateway's invariant check must not see them.
--
-- pgbench can only draw numbers, so people and terminals are numbered here, and the
-- documents a settlement stores (the request, the result, the stored answer and the
-- audit details) are real ones copied from the gateway's run into bench_payload, so
-- each transaction writes as many bytes as a real settlement does.

CREATE TABLE bench_people AS
    SELECT (row_number() OVER (ORDER BY person_key))::int AS n, person_key FROM people;
ALTER TABLE bench_people ADD PRIMARY KEY (n);

CREATE TABLE bench_terminals AS
    SELECT (row_number() OVER (ORDER BY t.terminal_id))::int AS n, t.terminal_id, t.clinic_id, c.level
    FROM terminals t JOIN clinics c USING (clinic_id)
    WHERE t.role = 'terminal' AND t.revoked_at IS NULL;
ALTER TABLE bench_terminals ADD PRIMARY KEY (n);

CREATE TABLE bench_payload (
    n        int PRIMARY KEY,
    request  jsonb NOT NULL,
    result   jsonb NOT NULL,
    response bytea NOT NULL,
    details  jsonb NOT NULL
);

-- The variant "one server-side function call" (benchmarks/pgbench_settle_function.sql):
-- the same statements as benchmarks/pgbench_settle.sql, in one round trip, one transaction.
CREATE FUNCTION bench_settle(p_person int, p_terminal int, p_payload int, p_total bigint, p_year int, p_policy text)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    v_id        uuid := gen_random_uuid();
    v_eligible  bigint := p_total * 9 / 10;
    v_insurance bigint := v_eligible * 6 / 10;
    v_subsidy   bigint := v_eligible / 10;
    v_aid       bigint := v_eligible / 20;
    v_oop       bigint := p_total - v_insurance - v_subsidy - v_aid;
    v_terminal  text;
    v_clinic    text;
    v_level     text;
    v_acc       accumulators%ROWTYPE;
BEGIN
    SELECT terminal_id, clinic_id, level INTO STRICT v_terminal, v_clinic, v_level
    FROM bench_terminals WHERE n = p_terminal;

    INSERT INTO accumulators (person_key, year, outpatient_deductible_cap, insurance_outpatient_cap,
                              insurance_inpatient_cap, subsidy_cap, aid_cap)
    SELECT person_key, p_year, 1000000000000, 1000000000000, 1000000000000, 1000000000000, 1000000000000
    FROM bench_people WHERE n = p_person
    ON CONFLICT (person_key, year) DO UPDATE SET person_key = EXCLUDED.person_key
    RETURNING * INTO STRICT v_acc;

    INSERT INTO settlements (person_key, settlement_id, terminal_id, request_id, clinic_id, clinic_level, visit_type,
                             service_date, policy_id, total, eligible, insurance, veteran_subsidy, hardship_aid,
                             out_of_pocket, request, result, created_at)
    SELECT v_acc.person_key, v_id, v_terminal, v_id::text, v_clinic, v_level, 'inpatient', current_date, p_policy,
           p_total, v_eligible, v_insurance, v_subsidy, v_aid, v_oop, request, result, now()
    FROM bench_payload WHERE n = p_payload;

    INSERT INTO ledger_entries (person_key, settlement_id, kind, account, amount, clinic_id, visit_type, year,
                                booked_on, created_at)
    VALUES (v_acc.person_key, v_id, 'settlement', 'insurance_fund', v_insurance, v_clinic, 'inpatient', p_year,
            current_date, now()),
           (v_acc.person_key, v_id, 'settlement', 'priority_care_fund', v_subsidy, v_clinic, 'inpatient', p_year,
            current_date, now()),
           (v_acc.person_key, v_id, 'settlement', 'aid_fund', v_aid, v_clinic, 'inpatient', p_year,
            current_date, now()),
           (v_acc.person_key, v_id, 'settlement', 'patient', v_oop, v_clinic, 'inpatient', p_year,
            current_date, now()),
           (v_acc.person_key, v_id, 'settlement', 'clinic', -p_total, v_clinic, 'inpatient', p_year,
            current_date, now());

    INSERT INTO audit_log (occurred_at, actor, action, subject, request_id, details)
    SELECT now(), v_terminal, 'settlement.created', v_id::text, v_id::text, details
    FROM bench_payload WHERE n = p_payload;

    INSERT INTO idempotency_keys (terminal_id, request_id, operation, request_hash, status, response, created_at)
    SELECT v_terminal, v_id::text, 'settle', sha256(convert_to(v_id::text, 'UTF8')), 200, response, now()
    FROM bench_payload WHERE n = p_payload;

    INSERT INTO request_nonces (digest, expires_at)
    VALUES (substr(sha256(convert_to(v_id::text, 'UTF8')), 1, 16), now() + interval '5 minutes');

    UPDATE accumulators SET
        insurance_inpatient_paid = insurance_inpatient_paid + v_insurance,
        subsidy_paid = subsidy_paid + v_subsidy,
        aid_paid = aid_paid + v_aid,
        unpaid_eligible = unpaid_eligible + v_eligible - v_insurance - v_subsidy,
        version = version + 1,
        updated_at = now()
    WHERE person_key = v_acc.person_key AND year = p_year;
    RETURN v_id;
END
$$;
