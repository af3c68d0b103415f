-- The registry holds memberships of any programme a policy names, not only the three payers'.
--
-- A policy in chain form declares its registry programmes under [programmes] (a charity fund's
-- `charity`, with codes such as `child_major_disease`), and its funds pay by them. Until now
-- 0001's CHECK let memberships.programme be only 'insurance', 'veteran_subsidy' or
-- 'hardship_aid', so a list for any other programme could not be stored. Which programmes and
-- codes exist is the policy's to say, and the gateway checks that when a list is imported or a
-- person registered (adapters/registry_files.py, gateway/service.py): a policy version can add a
-- programme without a migration. The database keeps the format only, the one the policy loader
-- requires of every name (settlement/chain_policy.py NAME): lower-case letters, digits and _,
-- starting with a letter, at most 40 characters. Every row stored so far matches it.
--
-- Adding the constraint reads the table once to check the rows already there, under the lock
-- the ALTER takes; memberships are a few rows per person, so this is seconds on a county's
-- registry. The name stays memberships_programme_check, the name PostgreSQL gave 0001's.
ALTER TABLE memberships DROP CONSTRAINT memberships_programme_check;
ALTER TABLE memberships ADD CONSTRAINT memberships_programme_check
    CHECK (programme ~ '^[a-z][a-z0-9_]{0,39}$');
