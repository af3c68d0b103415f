-- One row per settlement, and one per reversal, hold everything the money path must keep.
--
-- Before this, a settlement wrote nine rows and about 7 KB: the settlement with its request and
-- result as two JSON documents, five ledger rows, an audit row with the figures again, an
-- idempotency record with the whole answer, and a nonce row. Now it writes its settlement row
-- (about 1.3 KB; what each column is for is in docs/storage.md) and updates its accumulator row:
--
-- * the request's items and the engine's result (traces, lines, accumulators before and after)
--   are one compressed MessagePack ``record`` (adapters/settlement_rows.py); the answer is not
--   stored but rendered again from the row, in the format the retry asks for;
-- * the settlement row is the idempotency record: (person, terminal, request id) is unique, and
--   ``request_hash`` tells a retry from another request reusing the id; ``nonce`` tells a
--   replayed signed request from a retry (a retry is signed afresh);
-- * the double-entry ledger is a view over settlements and reversals (``ledger_entries``): its
--   lines are the settlement's own money columns, which the CHECK constraints already balance;
-- * settlements and reversals are append-only (only a settlement's reversal mark may be set,
--   once), so a closed day still never changes;
-- * the few facts reports and checks group by (programmes applied, caps reached, deductible and
--   year-to-date unpaid amounts taken) are small columns rather than paths into a document.
--
-- Rows written before this migration keep their documents: their record is the JSON text of
-- {"person", "items", "result"} (a leading 0x00 byte tells it from the compressed form).

ALTER TABLE settlements
    ADD COLUMN booked_on date,
    ADD COLUMN request_hash bytea CHECK (octet_length(request_hash) = 16),
    ADD COLUMN nonce bytea CHECK (octet_length(nonce) = 16),
    ADD COLUMN insured boolean NOT NULL DEFAULT false,
    ADD COLUMN veteran_category text,
    ADD COLUMN hardship_tier text,
    ADD COLUMN caps_reached smallint NOT NULL DEFAULT 0 CHECK (caps_reached BETWEEN 0 AND 7),
    ADD COLUMN deductible_taken bigint NOT NULL DEFAULT 0 CHECK (deductible_taken >= 0),
    ADD COLUMN unpaid_added bigint NOT NULL DEFAULT 0 CHECK (unpaid_added >= 0),
    ADD COLUMN record bytea;

UPDATE settlements s SET
    booked_on = coalesce(
        (SELECT min(l.booked_on) FROM ledger_entries l
          WHERE l.person_key = s.person_key AND l.settlement_id = s.settlement_id AND l.kind = 'settlement'),
        (s.created_at AT TIME ZONE 'Asia/Shanghai')::date),
    request_hash = (SELECT substr(k.request_hash, 1, 16) FROM idempotency_keys k
                     WHERE k.terminal_id = s.terminal_id AND k.request_id = s.request_id AND k.operation = 'settle'),
    insured = coalesce((s.result->'traces'->0->>'applied')::boolean, false),
    veteran_category = CASE WHEN (s.result->'traces'->1->>'applied')::boolean
                            THEN s.result->'traces'->1->>'programme' END,
    hardship_tier = CASE WHEN (s.result->'traces'->2->>'applied')::boolean
                         THEN s.result->'traces'->2->>'programme' END,
    caps_reached = (CASE WHEN (s.result->'traces'->0->>'cap_cut')::bigint > 0 THEN 1 ELSE 0 END)
                 + (CASE WHEN (s.result->'traces'->1->>'cap_cut')::bigint > 0 THEN 2 ELSE 0 END)
                 + (CASE WHEN (s.result->'traces'->2->>'cap_cut')::bigint > 0 THEN 4 ELSE 0 END),
    deductible_taken = (s.result->'accumulators_after'->>'outpatient_deductible_used')::bigint
                     - (s.result->'accumulators_before'->>'outpatient_deductible_used')::bigint,
    unpaid_added = (s.result->'accumulators_after'->>'unpaid_eligible')::bigint
                 - (s.result->'accumulators_before'->>'unpaid_eligible')::bigint,
    record = '\x00'::bytea || convert_to(
        jsonb_build_object('person', s.request->'person_id', 'items', s.request->'items', 'result', s.result)::text,
        'UTF8');

ALTER TABLE settlements
    ALTER COLUMN booked_on SET NOT NULL,
    ALTER COLUMN record SET NOT NULL,
    DROP COLUMN request,
    DROP COLUMN result;

ALTER TABLE reversals
    ADD COLUMN booked_on date,
    ADD COLUMN request_hash bytea CHECK (octet_length(request_hash) = 16),
    ADD COLUMN nonce bytea CHECK (octet_length(nonce) = 16);

UPDATE reversals r SET
    booked_on = coalesce(
        (SELECT min(l.booked_on) FROM ledger_entries l
          WHERE l.person_key = r.person_key AND l.settlement_id = r.settlement_id AND l.kind = 'reversal'),
        (r.created_at AT TIME ZONE 'Asia/Shanghai')::date),
    request_hash = (SELECT substr(k.request_hash, 1, 16) FROM idempotency_keys k
                     WHERE k.terminal_id = r.terminal_id AND k.request_id = r.request_id AND k.operation = 'reverse');

ALTER TABLE reversals ALTER COLUMN booked_on SET NOT NULL;

-- The ledger rows become a view of the same lines. Refuse to go on if any stored line disagrees
-- with its settlement: such a database needs a person to look at it before anything is dropped.
DO $$
BEGIN
    -- Every settlement has its five lines, every reversal its five negated ones, and no line lacks its row.
    IF EXISTS (
        SELECT 1 FROM settlements s
        WHERE (SELECT count(*) FROM ledger_entries l
                WHERE l.person_key = s.person_key AND l.settlement_id = s.settlement_id AND l.kind = 'settlement') <> 5
           OR (SELECT count(*) FROM ledger_entries l
                WHERE l.person_key = s.person_key AND l.settlement_id = s.settlement_id AND l.kind = 'reversal')
              <> CASE WHEN EXISTS (SELECT 1 FROM reversals r
                                    WHERE r.person_key = s.person_key AND r.settlement_id = s.settlement_id)
                      THEN 5 ELSE 0 END
    ) OR EXISTS (
        SELECT 1 FROM ledger_entries l
        WHERE NOT EXISTS (SELECT 1 FROM settlements s
                           WHERE s.person_key = l.person_key AND s.settlement_id = l.settlement_id)
    ) THEN
        RAISE EXCEPTION 'ledger_entries disagree with their settlements; run medsettle check before migrating';
    END IF;
    IF EXISTS (
        SELECT 1 FROM ledger_entries l
        JOIN settlements s ON s.person_key = l.person_key AND s.settlement_id = l.settlement_id
        GROUP BY l.settlement_id, l.kind, s.insurance, s.veteran_subsidy, s.hardship_aid, s.out_of_pocket, s.total
        HAVING sum(l.amount) FILTER (WHERE l.account = 'insurance_fund')
                   IS DISTINCT FROM CASE WHEN l.kind = 'settlement' THEN 1 ELSE -1 END * s.insurance
            OR sum(l.amount) FILTER (WHERE l.account = 'priority_care_fund')
                   IS DISTINCT FROM CASE WHEN l.kind = 'settlement' THEN 1 ELSE -1 END * s.veteran_subsidy
            OR sum(l.amount) FILTER (WHERE l.account = 'aid_fund')
                   IS DISTINCT FROM CASE WHEN l.kind = 'settlement' THEN 1 ELSE -1 END * s.hardship_aid
            OR sum(l.amount) FILTER (WHERE l.account = 'patient')
                   IS DISTINCT FROM CASE WHEN l.kind = 'settlement' THEN 1 ELSE -1 END * s.out_of_pocket
            OR sum(l.amount) FILTER (WHERE l.account = 'clinic')
                   IS DISTINCT FROM CASE WHEN l.kind = 'settlement' THEN -1 ELSE 1 END * s.total
    ) THEN
        RAISE EXCEPTION 'ledger_entries disagree with their settlements; run medsettle check before migrating';
    END IF;
END
$$;

DROP TABLE ledger_entries;
DROP TABLE idempotency_keys;

-- Three indexes per settlement, each for a reader: the request (the idempotency record, and the primary
-- key), the id (reads, receipts, reversals), the booking day (statements, reconciliation). The request
-- key is the terminal and its request id, whoever the bill is for: a second settlement of one id, even
-- for another patient and from another gateway at the same instant, waits for the first and fails on
-- the key. (A Citus cluster widens it with person_key: deploy/citus/distribute.sql.) The old primary
-- key (person_key, settlement_id) and the index by clinic and service date served no query the id and
-- booking-day indexes do not.
ALTER TABLE settlements DROP CONSTRAINT settlements_pkey;
DROP INDEX settlements_by_clinic_day;
DROP INDEX settlements_one_per_request;
ALTER TABLE settlements ADD CONSTRAINT settlements_one_per_request PRIMARY KEY (terminal_id, request_id);
CREATE INDEX settlements_by_booking_day ON settlements (booked_on, clinic_id);
CREATE INDEX reversals_by_booking_day ON reversals (booked_on);
-- Likewise one reversal per terminal and request id, whichever settlement it names.
ALTER TABLE reversals ADD CONSTRAINT reversals_one_per_request UNIQUE (terminal_id, request_id);

-- Double entry: a settlement debits each payer account and the patient with their share and
-- credits the clinic with the total; a reversal books the same lines negated on its own day.
CREATE VIEW ledger_entries AS
SELECT s.person_key, s.settlement_id, 'settlement'::text AS kind, l.account, l.amount, s.clinic_id, s.visit_type,
       extract(year FROM s.service_date)::int AS year, s.booked_on, s.created_at
FROM settlements s
CROSS JOIN LATERAL (VALUES ('insurance_fund', s.insurance), ('priority_care_fund', s.veteran_subsidy),
                           ('aid_fund', s.hardship_aid), ('patient', s.out_of_pocket), ('clinic', -s.total))
    AS l(account, amount)
UNION ALL
SELECT r.person_key, r.settlement_id, 'reversal'::text, l.account, -l.amount, s.clinic_id, s.visit_type,
       extract(year FROM s.service_date)::int, r.booked_on, r.created_at
FROM reversals r
JOIN settlements s ON s.person_key = r.person_key AND s.settlement_id = r.settlement_id
CROSS JOIN LATERAL (VALUES ('insurance_fund', s.insurance), ('priority_care_fund', s.veteran_subsidy),
                           ('aid_fund', s.hardship_aid), ('patient', s.out_of_pocket), ('clinic', -s.total))
    AS l(account, amount);

-- Append-only money: a settlement may only be marked reversed, once; nothing else in it changes,
-- and no settlement or reversal is ever removed.
CREATE FUNCTION settlements_only_mark_reversal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.reversal_id IS NULL AND NEW.reversal_id IS NOT NULL AND NEW.reversed_at IS NOT NULL
       AND to_jsonb(NEW) - 'reversal_id' - 'reversed_at' = to_jsonb(OLD) - 'reversal_id' - 'reversed_at' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'settlements are append-only: only a reversal mark may be set, once'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER settlements_append_only BEFORE UPDATE ON settlements
    FOR EACH ROW EXECUTE FUNCTION settlements_only_mark_reversal();
CREATE TRIGGER settlements_no_delete BEFORE DELETE ON settlements
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER settlements_no_truncate BEFORE TRUNCATE ON settlements
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER reversals_append_only BEFORE UPDATE OR DELETE ON reversals
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER reversals_no_truncate BEFORE TRUNCATE ON reversals
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
