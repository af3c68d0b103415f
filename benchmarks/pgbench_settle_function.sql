-- The database ceiling, variant: the same writes as benchmarks/pgbench_settle.sql in one round trip,
-- as a call of bench_settle() (benchmarks/pgbench_setup.sql). One statement is one transaction;
-- the commit is durable. The gap to pgbench_settle.sql is what the round trips cost.
--
--   pgbench -n -M prepared -c 8 -j 2 -T 15 -f benchmarks/pgbench_settle_function.sql \
--       -D people=20000 -D terminals=116 -D payloads=500 -D year=2026 -D policy=default-2026 DBURL

\set pid random(1, :people)
\set tid random(1, :terminals)
\set payload random(1, :payloads)
\set total random(2000, 60000)

SELECT bench_settle(:pid::int, :tid::int, :payload::int, :total::bigint, :year::int, :policy::text);
