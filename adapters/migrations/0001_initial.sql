-- Initial schema. Every per-person table carries person_key and has it in its
-- primary key, so the schema can later be distributed by person (Citus).
-- Money is bigint fen everywhere.

CREATE TABLE clinics (
    clinic_id   text PRIMARY KEY,
    name        text NOT NULL,
    level       text NOT NULL CHECK (level IN ('village', 'township', 'county')),
    region      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE terminals (
    terminal_id text PRIMARY KEY,
    clinic_id   text NOT NULL REFERENCES clinics,
    role        text NOT NULL DEFAULT 'terminal' CHECK (role IN ('terminal', 'finance', 'admin')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE policy_versions (
    policy_id       text PRIMARY KEY,
    effective_from  date NOT NULL UNIQUE,
    source          text NOT NULL,
    document        text NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now()
);

-- person_key is HMAC-SHA256(pepper, national ID); the raw number is never stored.
CREATE TABLE people (
    person_key  bytea PRIMARY KEY CHECK (length(person_key) = 32),
    masked_id   text NOT NULL,
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- In force from effective_from (inclusive) until struck_off_on (exclusive).
CREATE TABLE memberships (
    person_key      bytea NOT NULL REFERENCES people,
    membership_id   bigint GENERATED ALWAYS AS IDENTITY,
    programme       text NOT NULL CHECK (programme IN ('insurance', 'veteran_subsidy', 'hardship_aid')),
    code            text NOT NULL,
    effective_from  date NOT NULL,
    struck_off_on   date CHECK (struck_off_on IS NULL OR struck_off_on > effective_from),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_key, membership_id)
);

-- One row per person and calendar year. The *_cap columns hold the highest cap
-- in force when the row was written, so the database itself refuses a used
-- amount past its cap.
CREATE TABLE accumulators (
    person_key                  bytea NOT NULL,
    year                        integer NOT NULL,
    outpatient_deductible_used  bigint NOT NULL DEFAULT 0,
    insurance_outpatient_paid   bigint NOT NULL DEFAULT 0,
    insurance_inpatient_paid    bigint NOT NULL DEFAULT 0,
    subsidy_paid                bigint NOT NULL DEFAULT 0,
    aid_paid                    bigint NOT NULL DEFAULT 0,
    unpaid_eligible             bigint NOT NULL DEFAULT 0,
    outpatient_deductible_cap   bigint NOT NULL DEFAULT 0,
    insurance_outpatient_cap    bigint NOT NULL DEFAULT 0,
    insurance_inpatient_cap     bigint NOT NULL DEFAULT 0,
    subsidy_cap                 bigint NOT NULL DEFAULT 0,
    aid_cap                     bigint NOT NULL DEFAULT 0,
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_key, year),
    CHECK (outpatient_deductible_used BETWEEN 0 AND outpatient_deductible_cap),
    CHECK (insurance_outpatient_paid BETWEEN 0 AND insurance_outpatient_cap),
    CHECK (insurance_inpatient_paid BETWEEN 0 AND insurance_inpatient_cap),
    CHECK (subsidy_paid BETWEEN 0 AND subsidy_cap),
    CHECK (aid_paid BETWEEN 0 AND aid_cap),
    CHECK (unpaid_eligible >= 0)
);

CREATE TABLE settlements (
    person_key      bytea NOT NULL,
    settlement_id   uuid NOT NULL,
    terminal_id     text NOT NULL,
    request_id      text NOT NULL,
    clinic_id       text NOT NULL REFERENCES clinics,
    clinic_level    text NOT NULL,
    visit_type      text NOT NULL CHECK (visit_type IN ('outpatient', 'inpatient')),
    service_date    date NOT NULL,
    policy_id       text NOT NULL REFERENCES policy_versions,
    total           bigint NOT NULL CHECK (total >= 0),
    eligible        bigint NOT NULL CHECK (eligible BETWEEN 0 AND total),
    insurance       bigint NOT NULL CHECK (insurance >= 0),
    veteran_subsidy bigint NOT NULL CHECK (veteran_subsidy >= 0),
    hardship_aid    bigint NOT NULL CHECK (hardship_aid >= 0),
    out_of_pocket   bigint NOT NULL CHECK (out_of_pocket >= 0),
    request         jsonb NOT NULL,
    result          jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    reversed_at     timestamptz,
    reversal_id     uuid,
    PRIMARY KEY (person_key, settlement_id),
    CHECK (insurance + veteran_subsidy + hardship_aid + out_of_pocket = total),
    CHECK (insurance + veteran_subsidy + hardship_aid <= eligible),
    CHECK ((reversed_at IS NULL) = (reversal_id IS NULL))
);
CREATE INDEX settlements_by_id ON settlements (settlement_id);
CREATE INDEX settlements_by_clinic_day ON settlements (clinic_id, service_date);

CREATE TABLE reversals (
    person_key      bytea NOT NULL,
    reversal_id     uuid NOT NULL,
    settlement_id   uuid NOT NULL,
    terminal_id     text NOT NULL,
    request_id      text NOT NULL,
    reason          text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_key, reversal_id),
    UNIQUE (person_key, settlement_id)  -- a settlement is reversed at most once
);

-- Double entry: a settlement credits the clinic with the total and debits each
-- payer account with its share; a reversal writes the same lines negated. The
-- lines of one (settlement, kind) always sum to zero.
CREATE TABLE ledger_entries (
    person_key      bytea NOT NULL,
    entry_id        bigint GENERATED ALWAYS AS IDENTITY,
    settlement_id   uuid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('settlement', 'reversal')),
    account         text NOT NULL CHECK (account IN
                        ('insurance_fund', 'priority_care_fund', 'aid_fund', 'patient', 'clinic')),
    amount          bigint NOT NULL,
    clinic_id       text NOT NULL,
    visit_type      text NOT NULL,
    year            integer NOT NULL,
    booked_on       date NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_key, entry_id)
);
CREATE INDEX ledger_by_settlement ON ledger_entries (settlement_id);

-- The first answer to every settle and reversal request, replayed on retries.
-- The row is written in the same transaction as the settlement or reversal, so a
-- concurrent duplicate blocks on the key and then fails, and replays this answer.
CREATE TABLE idempotency_keys (
    terminal_id     text NOT NULL,
    request_id      text NOT NULL,
    operation       text NOT NULL CHECK (operation IN ('settle', 'reverse')),
    request_hash    bytea NOT NULL,
    status          integer NOT NULL,
    response        bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (terminal_id, request_id)
);
CREATE INDEX idempotency_by_age ON idempotency_keys (created_at);
