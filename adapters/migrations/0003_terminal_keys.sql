-- Terminal signing keys, and append-only money and audit tables.

-- Each terminal signs requests with a secret; the secret is stored only encrypted
-- (AES-256-GCM under the terminal-key encryption key, which lives outside the
-- database). Two active keys per terminal allow rotation without downtime.
CREATE TABLE terminal_keys (
    key_id            text PRIMARY KEY,
    terminal_id       text NOT NULL REFERENCES terminals,
    secret_ciphertext bytea NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    retired_at        timestamptz
);
CREATE INDEX terminal_keys_by_terminal ON terminal_keys (terminal_id);

-- Ledger lines and audit rows are never changed or removed, whoever asks.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
