-- Distribute the medsettle schema over a Citus cluster.
--
-- Run once, on the coordinator, as the database owner, AFTER the migrations have
-- created the schema there (`medsettle migrate` against the coordinator) and BEFORE
-- any data is loaded. See deploy/citus/README.md for the whole procedure.
--
-- Every table the migrations create is named below, either in a
-- create_reference_table / create_distributed_table call or in the
-- "coordinator-only" list. tests/integration/test_schema_rules.py checks that
-- against the live migrated schema, so a new table fails the suite until it is
-- placed here.
--
-- coordinator-only: audit_log, audit_seals, ledger_seals
--
-- Prerequisites (Citus 12 or later, PostgreSQL 16):
--   CREATE EXTENSION citus;                                  -- on the coordinator
--   SELECT citus_set_coordinator_host('<coordinator-host>'); -- coordinator in the metadata, so
--                                                            -- local tables may keep FKs to reference tables
--   SELECT citus_add_node('<worker-host>', 5432);            -- once per worker

BEGIN;

-- The append-only triggers (refuse_change), the accumulator version trigger
-- (accumulators_bump_version) and the caps triggers (accumulators_counters_within_caps_*, over the
-- rows each statement wrote) read and write no other table, so they are safe to run
-- on each shard; the check of a settlement's clinic and policy version
-- (settlements_name_known_references, 0022) reads only the reference tables clinics and
-- policy_versions, which every node holds whole. Citus asks for this switch before it
-- distributes a table that has triggers (settlements, reversals, accumulators).
SET LOCAL citus.enable_unsafe_triggers TO on;

-- ------------------------------------------------------------ reference tables
-- Small, read on every request, changed rarely: one full copy on every node, so
-- the foreign keys from the distributed tables and every join stay local to a shard.
SELECT create_reference_table('clinics');
SELECT create_reference_table('policy_versions');
SELECT create_reference_table('terminals');          -- FK to clinics (reference -> reference)
SELECT create_reference_table('terminal_keys');      -- FK to terminals (reference -> reference)
SELECT create_reference_table('schema_migrations');  -- the migration runner's bookkeeping
-- The item catalogue: read whole by each gateway at start and after an import, written a few times a year.
SELECT create_reference_table('catalogue_versions');
SELECT create_reference_table('catalogue_items');    -- FK to catalogue_versions (reference -> reference)

-- ------------------------------------------------------------ request keys
-- widened before distributing: settlements_one_per_request, reversals_one_per_request, insurer_messages_message_id
-- On one server a terminal's request id is unique whoever the bill is for. Citus needs every unique
-- key of a distributed table to hold its distribution column, so on a cluster the two request keys
-- take person_key too: one id reused for two patients at the same instant is then refused by the
-- read only, and `medsettle check` (one_settlement_per_request) names such a pair.
ALTER TABLE settlements DROP CONSTRAINT settlements_one_per_request,
    ADD CONSTRAINT settlements_one_per_request PRIMARY KEY (terminal_id, request_id, person_key);
ALTER TABLE reversals DROP CONSTRAINT reversals_one_per_request,
    ADD CONSTRAINT reversals_one_per_request UNIQUE (terminal_id, request_id, person_key);
-- An insurer message id is unique by construction (second + a cycling 9,000-value sequence), so on a cluster
-- its key may take person_key too.
ALTER TABLE insurer_messages DROP CONSTRAINT insurer_messages_message_id,
    ADD CONSTRAINT insurer_messages_message_id UNIQUE (message_id, person_key);

-- ------------------------------------------------------------ per-person tables
-- Distributed by person_key (HMAC of the national ID: uniformly spread), all in
-- one colocation group, so everything a settlement, reversal or eligibility check
-- reads and writes for one person is on one shard. Every primary key and unique
-- constraint of these tables includes person_key.
SELECT create_distributed_table('people', 'person_key');
SELECT create_distributed_table('memberships', 'person_key', colocate_with => 'people');     -- FK to people, colocated
SELECT create_distributed_table('accumulators', 'person_key', colocate_with => 'people');
SELECT create_distributed_table('settlements', 'person_key', colocate_with => 'people');     -- names clinics, policy_versions (0022)
SELECT create_distributed_table('reversals', 'person_key', colocate_with => 'people');
-- Re-adjudication: the work list, the adjustments it books and finance's orders, each keyed by person first.
SELECT create_distributed_table('readjudications', 'person_key', colocate_with => 'people');
SELECT create_distributed_table('adjustments', 'person_key', colocate_with => 'people');       -- FK to readjudications
SELECT create_distributed_table('adjustment_orders', 'person_key', colocate_with => 'people'); -- FK to readjudications
-- Messages to the insurer's core, recorded before they are sent; the settle that flips one commits on its shard.
SELECT create_distributed_table('insurer_messages', 'person_key', colocate_with => 'people');
-- ledger_entries is a view over settlements, reversals and adjustments: it follows them, one person per shard.

-- A settlement row is its request's idempotency record (unique person, terminal and
-- request id), so a settlement writes to its person's shard only; a reversal row likewise.

-- ------------------------------------------------------------ request nonces
-- Short-lived (minutes) rows keyed by a digest of key id and nonce; no person_key. A
-- claim is one insert on the digest's shard; a settlement's claim rides in its read.
SELECT create_distributed_table('request_nonces', 'digest', colocate_with => 'none');

-- ------------------------------------------------------------ coordinator-only
-- audit_log and audit_seals stay plain tables on the coordinator (listed in the
-- "coordinator-only" line at the top). They are append-only and chained in one
-- global order: audit_id comes from one identity sequence and the sealer hashes
-- rows strictly in that order, one sealer at a time. A distributed table has no
-- global order; a reference table would keep it but would turn every audited write
-- into a write to every node (2PC to all workers). A settlement writes no audit row:
-- its own append-only row is the record; a reversal's audit row is written in the same
-- transaction (the coordinator takes part in the 2PC), and the sealer's reads are local.
-- ledger_seals (one row per minute of settlements and reversals) stays there too, for the
-- same single order; the sealer's query computes each row's digest on its worker and brings
-- only the digests (about 100 bytes a row, not the rows) to the coordinator.

COMMIT;
