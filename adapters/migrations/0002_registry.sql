-- The full registry: where each membership came from, one open membership per
-- programme, the person's region (from the ID's division code) for statistics,
-- and an append-only audit trail.

ALTER TABLE people ADD COLUMN region_code text NOT NULL DEFAULT '';

ALTER TABLE memberships ADD COLUMN source text NOT NULL DEFAULT 'api';
ALTER TABLE memberships ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- At most one open-ended membership of each programme per person. Overlaps of
-- closed spans are prevented by the registry code under the person row lock
-- (btree_gist, which an EXCLUDE constraint on bytea would need, is not in every
-- PostgreSQL build we run on).
CREATE UNIQUE INDEX memberships_one_open ON memberships (person_key, programme) WHERE struck_off_on IS NULL;
CREATE INDEX memberships_by_programme ON memberships (programme, code);

CREATE TABLE audit_log (
    audit_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    action       text NOT NULL,
    subject      text NOT NULL DEFAULT '',
    request_id   text NOT NULL DEFAULT '',
    source       text NOT NULL DEFAULT '',
    details      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_time ON audit_log (occurred_at);
