-- Every update of an accumulator row bumps its version, whoever makes it: a replica
-- still running code from before 0007 during a rolling deploy, or an operator's manual
-- correction. Without this, such a write would leave the version unchanged, and a
-- settlement computed on the totals before it would still pass the version check and
-- overwrite it. The settle and reversal writes also bump the version themselves; the
-- trigger makes that the database's rule rather than the code's habit. It touches only
-- the row being updated, so it is safe per shard on Citus (deploy/citus).
CREATE FUNCTION accumulators_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END
$$;

CREATE TRIGGER accumulators_bump_version BEFORE UPDATE ON accumulators
    FOR EACH ROW EXECUTE FUNCTION accumulators_bump_version();
