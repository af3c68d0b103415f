-- A hash chain over settlements and reversals, one seal per minute that had any, not one per row.
--
-- Since 0010 a settlement writes no audit row, so the audit chain (0004) no longer covers money.
-- Triggers keep settlements and reversals append-only, but the table owner can disable them; the
-- seals make such a change found. A sealer (adapters/audit.py, one at a time by advisory lock)
-- seals each minute of ``created_at`` once that minute ended long enough ago that no write still in
-- flight can commit into it. A seal covers every row created from the previous seal's end (the
-- first seal: from the beginning) to its own end, so minutes without rows need no seal and still
-- nothing can be added to them unnoticed:
--
--   digest   = SHA-256 of the SHA-256 of each row's canonical form, settlements then reversals,
--              each in (created_at, id, person_key) order; the canonical form is every column but
--              a settlement's reversal mark (reversed_at, reversal_id), which is set later and
--              proved by the reversal's own row in its own minute;
--   locator  = the first 8 bytes of each of those row digests, in the same order: not needed for
--              the proof, but it lets ``medsettle audit verify`` name the row that changed;
--   row_hash = SHA-256(prev_hash || the seal's canonical form), prev_hash the previous seal's.
--
-- ``form`` names the canonical form of the rows (adapters/audit.py); a later column added to
-- settlements or reversals gets a new form, so older seals still verify under theirs.
CREATE TABLE ledger_seals (
    period_end   timestamptz PRIMARY KEY,
    period_start timestamptz UNIQUE,  -- NULL for the first seal: it covers everything before its end
    form         smallint NOT NULL,
    settlements  integer NOT NULL CHECK (settlements >= 0),
    reversals    integer NOT NULL CHECK (reversals >= 0),
    digest       bytea NOT NULL CHECK (octet_length(digest) = 32),
    locator      bytea NOT NULL CHECK (octet_length(locator) = 8 * (settlements + reversals)),
    prev_hash    bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    row_hash     bytea NOT NULL CHECK (octet_length(row_hash) = 32),
    sealed_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (period_start < period_end)
);
CREATE TRIGGER ledger_seals_append_only BEFORE UPDATE OR DELETE ON ledger_seals
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER ledger_seals_no_truncate BEFORE TRUNCATE ON ledger_seals
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- The sealer reads one minute of rows at a time, by created_at. Rows are appended in about that
-- order, so a BRIN index finds them for a few bytes per 32 pages, where a B-tree would add an
-- entry (about 30 bytes) to every settlement. autosummarize keeps the newest pages summarised,
-- so the sealer's range scan stays at the table's tail.
CREATE INDEX settlements_by_created_at ON settlements USING brin (created_at)
    WITH (pages_per_range = 32, autosummarize = on);
CREATE INDEX reversals_by_created_at ON reversals USING brin (created_at)
    WITH (pages_per_range = 32, autosummarize = on);
