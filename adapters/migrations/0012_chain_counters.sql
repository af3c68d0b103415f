-- Counters and funds of any policy's chain (settlement/chain.py), not only the default's.
--
-- * A person-year's counters are named by the policy (outpatient_deductible_used, aid_paid,
--   critical_illness_base...): ``accumulators.counters`` holds them by name, and ``caps`` the highest
--   cap any settlement of the person-year was decided under, by the same names (a counter without a
--   cap is absent from it). The row is still one per person-year, so one row lock still serialises a
--   person's settlements, and the CHECK still refuses a counter past its cap or below zero.
-- * A settlement still keeps insurance, veteran_subsidy and hardship_aid in their own columns (the
--   API's fields; 0 when the chain has no such fund); what any other fund paid is in
--   ``other_funds``, by fund code. Money is still conserved by a CHECK, and the ledger view books
--   one line per fund: the three named funds under their accounts, any other as <code>_fund.
-- * Adding a column with a constant default rewrites no settlement row, so the append-only trigger
--   and the ledger seals (which cover the columns they name, and the record: other_funds is the
--   record's traces again) are untouched.

CREATE FUNCTION counters_within_caps(counters jsonb, caps jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT jsonb_typeof(counters) = 'object' AND jsonb_typeof(caps) = 'object' AND coalesce(bool_and(
        jsonb_typeof(c.value) = 'number' AND (c.value)::bigint >= 0
        AND (caps -> c.key IS NULL OR (c.value)::bigint <= (caps ->> c.key)::bigint)
    ), true)
    FROM jsonb_each(counters) c
$$;

-- The higher of two caps per counter: caps only ever rise within a person-year.
CREATE FUNCTION greatest_caps(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(key, cap), '{}'::jsonb) FROM (
        SELECT key, max(value::bigint) AS cap
        FROM (SELECT * FROM jsonb_each_text(a) UNION ALL SELECT * FROM jsonb_each_text(b)) both_caps
        GROUP BY key
    ) merged
$$;

CREATE FUNCTION fund_amounts_valid(funds jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT jsonb_typeof(funds) = 'object' AND coalesce(bool_and(
        jsonb_typeof(f.value) = 'number' AND (f.value)::bigint >= 0 AND f.key ~ '^[a-z][a-z0-9_]{0,39}$'
        AND f.key NOT IN ('insurance', 'veteran_subsidy', 'hardship_aid')
    ), true)
    FROM jsonb_each(funds) f
$$;

CREATE FUNCTION fund_amounts_total(funds jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(sum(value::bigint), 0)::bigint FROM jsonb_each_text(funds)
$$;

ALTER TABLE accumulators
    ADD COLUMN counters jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN caps jsonb NOT NULL DEFAULT '{}';

UPDATE accumulators SET
    counters = jsonb_build_object(
        'outpatient_deductible_used', outpatient_deductible_used,
        'insurance_outpatient_paid', insurance_outpatient_paid,
        'insurance_inpatient_paid', insurance_inpatient_paid,
        'subsidy_paid', subsidy_paid,
        'aid_paid', aid_paid,
        'unpaid_eligible', unpaid_eligible),
    caps = jsonb_build_object(
        'outpatient_deductible_used', outpatient_deductible_cap,
        'insurance_outpatient_paid', insurance_outpatient_cap,
        'insurance_inpatient_paid', insurance_inpatient_cap,
        'subsidy_paid', subsidy_cap,
        'aid_paid', aid_cap);

ALTER TABLE accumulators
    DROP COLUMN outpatient_deductible_used,
    DROP COLUMN insurance_outpatient_paid,
    DROP COLUMN insurance_inpatient_paid,
    DROP COLUMN subsidy_paid,
    DROP COLUMN aid_paid,
    DROP COLUMN unpaid_eligible,
    DROP COLUMN outpatient_deductible_cap,
    DROP COLUMN insurance_outpatient_cap,
    DROP COLUMN insurance_inpatient_cap,
    DROP COLUMN subsidy_cap,
    DROP COLUMN aid_cap,
    ADD CONSTRAINT accumulators_counters_within_caps CHECK (counters_within_caps(counters, caps));

ALTER TABLE settlements ADD COLUMN other_funds jsonb NOT NULL DEFAULT '{}'
    CONSTRAINT settlements_other_funds_valid CHECK (fund_amounts_valid(other_funds));

-- The two money CHECKs of 0001 (payers + patient = total; payers <= eligible) now count every fund.
DO $$
DECLARE
    name text;
BEGIN
    FOR name IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'settlements'::regclass AND contype = 'c'
          AND pg_get_constraintdef(oid) LIKE '%insurance + veteran_subsidy%'
    LOOP
        EXECUTE format('ALTER TABLE settlements DROP CONSTRAINT %I', name);
    END LOOP;
END
$$;

ALTER TABLE settlements
    ADD CONSTRAINT settlements_conserve_money
        CHECK (insurance + veteran_subsidy + hardship_aid + fund_amounts_total(other_funds) + out_of_pocket = total),
    ADD CONSTRAINT settlements_pay_only_eligible
        CHECK (insurance + veteran_subsidy + hardship_aid + fund_amounts_total(other_funds) <= eligible);

CREATE OR REPLACE VIEW ledger_entries AS
SELECT s.person_key, s.settlement_id, 'settlement'::text AS kind, l.account, l.amount, s.clinic_id, s.visit_type,
       extract(year FROM s.service_date)::int AS year, s.booked_on, s.created_at
FROM settlements s
CROSS JOIN LATERAL (
    VALUES ('insurance_fund', s.insurance), ('priority_care_fund', s.veteran_subsidy),
           ('aid_fund', s.hardship_aid), ('patient', s.out_of_pocket), ('clinic', -s.total)
    UNION ALL
    SELECT f.key || '_fund', f.value::bigint FROM jsonb_each_text(s.other_funds) f
) AS l(account, amount)
UNION ALL
SELECT r.person_key, r.settlement_id, 'reversal'::text, l.account, -l.amount, s.clinic_id, s.visit_type,
       extract(year FROM s.service_date)::int, r.booked_on, r.created_at
FROM reversals r
JOIN settlements s ON s.person_key = r.person_key AND s.settlement_id = r.settlement_id
CROSS JOIN LATERAL (
    VALUES ('insurance_fund', s.insurance), ('priority_care_fund', s.veteran_subsidy),
           ('aid_fund', s.hardship_aid), ('patient', s.out_of_pocket), ('clinic', -s.total)
    UNION ALL
    SELECT f.key || '_fund', f.value::bigint FROM jsonb_each_text(s.other_funds) f
) AS l(account, amount);
