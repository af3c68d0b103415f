-- A settlement's clinic and policy version are checked once per statement, without locking them.
--
-- The foreign keys settlements_clinic_id_fkey and settlements_policy_id_fkey checked each row inserted with
-- SELECT ... FOR KEY SHARE on the clinic's row and the policy version's row. The settle write runs on several
-- connections at once (settle_batch_lanes), and every bill of a year names the same policy version: each
-- lock taken while another transaction held one made a new MultiXact, rewrote the locked row's xmax and wrote
-- WAL. Under load that cost about a tenth of PostgreSQL's CPU per settlement (benchmarks/RESULTS.md, 2026-12-03
-- (late), issue 15), and a MultiXact a settlement also brings multixact wraparound vacuums sooner.
--
-- The lock only kept a parent row from being deleted, or its key changed, before the child committed. Here
-- neither can happen at all: a clinic and a policy version are never deleted, truncated or re-keyed (the
-- triggers below refuse it; no code did it), because the settlements that name them are kept for ever. So
-- a check that reads the committed rows, without a lock, holds as the foreign key did: a statement trigger
-- reads the rows an INSERT wrote (its transition table) in one query and refuses the statement as the foreign
-- key did, with SQLSTATE 23503 (foreign_key_violation) naming the constraint it replaces, so nothing of the
-- statement is written. A parent still being inserted by a transaction that has not committed is not there,
-- as for the foreign key. Settlements are append-only (0010): their clinic and policy never change after the
-- insert, so there is no UPDATE to check. ``medsettle check`` (settlement_names_its_clinic_and_policy) reads
-- the whole table for rows that break the rule.
--
-- Like every trigger (and the foreign keys' own), these do not fire for a session with
-- session_replication_role = replica. On Citus (deploy/citus) clinics and policy_versions are reference
-- tables, held whole on every node, so a shard's trigger reads them where it runs.

ALTER TABLE settlements DROP CONSTRAINT settlements_clinic_id_fkey, DROP CONSTRAINT settlements_policy_id_fkey;

CREATE FUNCTION settlements_name_known_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unknown record;
BEGIN
    SELECT w.clinic_id, w.policy_id, NOT EXISTS (SELECT FROM clinics c WHERE c.clinic_id = w.clinic_id) AS no_clinic
    INTO unknown
    FROM written w
    WHERE NOT EXISTS (SELECT FROM clinics c WHERE c.clinic_id = w.clinic_id)
       OR NOT EXISTS (SELECT FROM policy_versions p WHERE p.policy_id = w.policy_id)
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF unknown.no_clinic THEN
        RAISE EXCEPTION 'insert or update on table "settlements" violates foreign key constraint "settlements_clinic_id_fkey"'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'settlements', CONSTRAINT = 'settlements_clinic_id_fkey',
                  DETAIL = format('Key (clinic_id)=(%s) is not present in table "clinics".', unknown.clinic_id);
    END IF;
    RAISE EXCEPTION 'insert or update on table "settlements" violates foreign key constraint "settlements_policy_id_fkey"'
        USING ERRCODE = 'foreign_key_violation', TABLE = 'settlements', CONSTRAINT = 'settlements_policy_id_fkey',
              DETAIL = format('Key (policy_id)=(%s) is not present in table "policy_versions".', unknown.policy_id);
END
$$;

CREATE TRIGGER settlements_name_known_references AFTER INSERT ON settlements
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION settlements_name_known_references();

-- What settlements name is kept: no DELETE, no TRUNCATE, no change of the key. Every other column may change
-- as before (a clinic's name, a policy version's restated document).
CREATE FUNCTION refuse_removing_what_settlements_name() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%: % refused; its rows are kept, under their keys, for the settlements that name them',
        TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER clinics_kept BEFORE DELETE ON clinics
    FOR EACH ROW EXECUTE FUNCTION refuse_removing_what_settlements_name();
CREATE TRIGGER clinics_key_kept BEFORE UPDATE OF clinic_id ON clinics
    FOR EACH ROW WHEN (NEW.clinic_id IS DISTINCT FROM OLD.clinic_id)
    EXECUTE FUNCTION refuse_removing_what_settlements_name();
CREATE TRIGGER clinics_no_truncate BEFORE TRUNCATE ON clinics
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_removing_what_settlements_name();
CREATE TRIGGER policy_versions_kept BEFORE DELETE ON policy_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_removing_what_settlements_name();
CREATE TRIGGER policy_versions_key_kept BEFORE UPDATE OF policy_id ON policy_versions
    FOR EACH ROW WHEN (NEW.policy_id IS DISTINCT FROM OLD.policy_id)
    EXECUTE FUNCTION refuse_removing_what_settlements_name();
CREATE TRIGGER policy_versions_no_truncate BEFORE TRUNCATE ON policy_versions
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_removing_what_settlements_name();
