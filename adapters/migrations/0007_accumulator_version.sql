-- A version number on each person-year accumulator row, bumped by every write.
-- The settle path reads the row and its version, computes, and writes everything
-- in one statement that applies only if the version is unchanged (optimistic
-- concurrency): two round trips per settlement instead of five. A settlement
-- that loses the race retries under a row lock (SELECT ... FOR UPDATE).
ALTER TABLE accumulators ADD COLUMN version bigint NOT NULL DEFAULT 0 CHECK (version >= 0);
