-- The insurer's item catalogue (医保目录), by version (DESIGN Part 2, "The item catalogue").
--
-- A version is the whole catalogue in force from its effective date until the next version's. Versions
-- are imported in date order (adapters/catalogue_store.py), and each stores only what it changed from
-- the version before: a row per code added, changed or removed. Most of a 200,000-item catalogue never
-- changes, so a new version writes thousands of rows, not 200,000, and the catalogue in force on a date
-- is, per code, its latest row on or before that date (no row, or a removal: not in the catalogue).
--
-- Money is int fen and a share parts per million, as everywhere: a price cap is fen per unit (NULL: no
-- cap); a B item's self-pay-first share is NULL when the policy's share applies. Both tables are
-- append-only: settlements are decided under a version, which must stay as it was.

CREATE TABLE catalogue_versions (
    effective_from date PRIMARY KEY,
    imported_at    timestamptz NOT NULL DEFAULT now(),
    actor          text NOT NULL,
    source         text NOT NULL,  -- the file's name
    file_sha256    text NOT NULL CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
    items          integer NOT NULL CHECK (items > 0),  -- codes in force in this version
    added          integer NOT NULL CHECK (added >= 0),
    removed        integer NOT NULL CHECK (removed >= 0),
    changed        integer NOT NULL CHECK (changed >= 0)
);

CREATE TABLE catalogue_items (
    code               text NOT NULL CHECK (length(code) BETWEEN 1 AND 64 AND code !~ '[[:cntrl:]]'),
    effective_from     date NOT NULL REFERENCES catalogue_versions,
    name               text,
    category           text CHECK (category IN ('A', 'B', 'C')),
    self_pay_share_ppm integer CHECK (self_pay_share_ppm BETWEEN 0 AND 1000000),
    unit               text,
    price_cap          bigint CHECK (price_cap >= 0),
    removed            boolean NOT NULL DEFAULT false,
    PRIMARY KEY (code, effective_from),
    -- A removal says only that the code is gone; an item in force says what it is.
    CONSTRAINT catalogue_items_removal CHECK (
        CASE WHEN removed
            THEN category IS NULL AND name IS NULL AND unit IS NULL AND price_cap IS NULL
                 AND self_pay_share_ppm IS NULL
            ELSE category IS NOT NULL AND name IS NOT NULL AND unit IS NOT NULL
        END
    ),
    -- Only a B item has a self-pay-first share of its own (A is wholly in scope, C wholly self-pay).
    CONSTRAINT catalogue_items_share_on_b CHECK (self_pay_share_ppm IS NULL OR category = 'B')
);

CREATE TRIGGER catalogue_versions_append_only BEFORE UPDATE OR DELETE ON catalogue_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER catalogue_versions_no_truncate BEFORE TRUNCATE ON catalogue_versions
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER catalogue_items_append_only BEFORE UPDATE OR DELETE ON catalogue_items
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER catalogue_items_no_truncate BEFORE TRUNCATE ON catalogue_items
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
