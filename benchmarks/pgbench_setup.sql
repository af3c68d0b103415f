-- The numbered tables the generated pgbench scripts draw from (benchmarks/pgbench_scripts.py).
--
-- benchmarks/ceilings.py runs this in a throw-away copy of the seeded, migrated database,
-- never in the database the gateway settles in: settlements are append-only, so pgbench's
-- rows could not be removed again, and the gateway's invariant check must not see them.
--
-- pgbench can only draw numbers, so people and terminals are numbered here, and the bytes a
-- settlement stores that no number can stand for (its compressed record, its request
-- fingerprint and nonce) are real ones, copied from the gateway's own settlements into
-- bench_records, so each transaction writes as many bytes as a real settlement does.

CREATE TABLE bench_people AS
    SELECT (row_number() OVER (ORDER BY person_key))::int AS n, person_key FROM people;
ALTER TABLE bench_people ADD PRIMARY KEY (n);

CREATE TABLE bench_terminals AS
    SELECT (row_number() OVER (ORDER BY t.terminal_id))::int AS n, t.terminal_id, t.clinic_id, c.level
    FROM terminals t JOIN clinics c USING (clinic_id)
    WHERE t.role = 'terminal' AND t.revoked_at IS NULL;
ALTER TABLE bench_terminals ADD PRIMARY KEY (n);

CREATE TABLE bench_records (
    n            int PRIMARY KEY,
    record       bytea NOT NULL,
    request_hash bytea NOT NULL,
    nonce        bytea NOT NULL
);
