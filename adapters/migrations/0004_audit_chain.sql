-- A hash chain over the audit trail. Audit rows are written by many transactions at
-- once, so they are chained afterwards, in seal order, by one sealer at a time:
-- each seal holds SHA-256(previous seal's hash || the audit row's canonical form).
-- Altering or removing a sealed audit row, or a seal, breaks the chain.
CREATE TABLE audit_seals (
    seal_seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    audit_id    bigint NOT NULL UNIQUE,
    prev_hash   bytea NOT NULL,
    row_hash    bytea NOT NULL,
    sealed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER audit_seals_append_only BEFORE UPDATE OR DELETE ON audit_seals
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_seals_no_truncate BEFORE TRUNCATE ON audit_seals
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
