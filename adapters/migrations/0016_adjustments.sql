-- Re-adjudication (DESIGN Part 2, "Replay"): what a registry change with a past date, or a refund of an
-- earlier bill, changes in a person-year's settlements is booked as adjustments, never as edits.
--
-- * ``readjudications`` is the work list: one row per cause and person-year, written in the same
--   transaction as its cause (the registry change, the reversal). The pair (cause, person-year) is
--   unique, so a cause adjusts a person-year at most once however often it is retried or raced. A
--   background runner (adapters/readjudication.py) takes pending rows one at a time (FOR UPDATE SKIP
--   LOCKED), replays the person-year under its row lock, and marks the row done in that transaction.
-- * ``adjustments`` holds, per settlement the replay changed, what each fund and the patient pay more
--   (positive) or less (negative) than the settlement and its earlier adjustments: the fund deltas and
--   the patient's sum to zero (the clinic was paid the bill's total once; that never changes), and the
--   person-year's counters move by ``counters``. Append-only; the ledger view books them as lines of
--   kind 'adjustment' on their own booking day.
-- * ``adjustment_orders`` turns a re-adjudication's net per fund into what finance acts on: a payable
--   order (the fund owes the patient), a recovery order (the patient owes the fund, only where the
--   policy says so) or an overpayment reported; below the policy's de-minimis amount, waived. Only an
--   open order's status may change, once, to paid or recovered.

CREATE FUNCTION fund_deltas_valid(funds jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT jsonb_typeof(funds) = 'object' AND coalesce(bool_and(
        jsonb_typeof(f.value) = 'number' AND f.key ~ '^[a-z][a-z0-9_]{0,39}$'
        AND f.key NOT IN ('insurance', 'veteran_subsidy', 'hardship_aid')
    ), true)
    FROM jsonb_each(funds) f
$$;

CREATE TABLE readjudications (
    readjudication_id bigint GENERATED ALWAYS AS IDENTITY,
    person_key    bytea NOT NULL CHECK (length(person_key) = 32),
    year          integer NOT NULL,
    cause_kind    text NOT NULL CHECK (cause_kind IN ('registry', 'reversal')),
    cause_ref     text NOT NULL,  -- the registry change's id, or the reversal's
    cause         text NOT NULL,  -- what changed, in words (masked ID only)
    from_date     date NOT NULL,  -- the earliest service date the cause can change
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'needs_review')),
    requested_at  timestamptz NOT NULL DEFAULT now(),
    done_at       timestamptz,
    booked_on     date,
    adjusted      integer CHECK (adjusted >= 0),  -- settlements adjusted
    detail        text NOT NULL DEFAULT '',  -- why a person must look (needs_review)
    -- person_key leads every key of the per-person tables, so they can be distributed by it (Citus).
    PRIMARY KEY (person_key, readjudication_id),
    UNIQUE (cause_kind, cause_ref, person_key, year),
    CHECK ((status = 'pending') = (done_at IS NULL))
);
CREATE INDEX readjudications_pending ON readjudications (readjudication_id) WHERE status = 'pending';
CREATE INDEX readjudications_by_person ON readjudications (person_key, year);

CREATE TABLE adjustments (
    person_key        bytea NOT NULL,
    adjustment_id     bigint GENERATED ALWAYS AS IDENTITY,
    settlement_id     uuid NOT NULL,
    readjudication_id bigint NOT NULL,
    year              integer NOT NULL,
    clinic_id         text NOT NULL,
    visit_type        text NOT NULL,
    booked_on         date NOT NULL,
    insurance         bigint NOT NULL,
    veteran_subsidy   bigint NOT NULL,
    hardship_aid      bigint NOT NULL,
    other_funds       jsonb NOT NULL DEFAULT '{}' CONSTRAINT adjustments_other_funds_valid
                          CHECK (fund_deltas_valid(other_funds)),
    out_of_pocket     bigint NOT NULL,
    counters          jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_key, adjustment_id),
    UNIQUE (person_key, readjudication_id, settlement_id),
    FOREIGN KEY (person_key, readjudication_id) REFERENCES readjudications,
    CONSTRAINT adjustments_conserve_money
        CHECK (insurance + veteran_subsidy + hardship_aid + fund_amounts_total(other_funds) + out_of_pocket = 0)
);
CREATE INDEX adjustments_by_settlement ON adjustments (settlement_id);
CREATE INDEX adjustments_by_booking_day ON adjustments (booked_on, clinic_id);

CREATE TRIGGER adjustments_append_only BEFORE UPDATE OR DELETE ON adjustments
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER adjustments_no_truncate BEFORE TRUNCATE ON adjustments
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

CREATE TABLE adjustment_orders (
    order_id          uuid NOT NULL,
    readjudication_id bigint NOT NULL,
    person_key        bytea NOT NULL,
    year              integer NOT NULL,
    fund              text NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('payable', 'recovery', 'overpayment')),
    amount            bigint NOT NULL CHECK (amount > 0),
    status            text NOT NULL CHECK (status IN ('open', 'paid', 'recovered', 'waived', 'reported')),
    booked_on         date NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    closed_at         timestamptz,
    closed_by         text,
    reference         text,
    PRIMARY KEY (person_key, order_id),
    UNIQUE (person_key, readjudication_id, fund),
    FOREIGN KEY (person_key, readjudication_id) REFERENCES readjudications,
    CHECK ((status IN ('paid', 'recovered')) = (closed_at IS NOT NULL)),
    CHECK (CASE kind WHEN 'payable' THEN status IN ('open', 'paid', 'waived')
                     WHEN 'recovery' THEN status IN ('open', 'recovered', 'waived')
                     ELSE status IN ('reported', 'waived') END)
);
CREATE INDEX adjustment_orders_by_status ON adjustment_orders (status, booked_on);
CREATE INDEX adjustment_orders_by_id ON adjustment_orders (order_id);

-- An order is closed once: open to paid (a payable order) or recovered (a recovery order); nothing else
-- in it ever changes, and no order is removed.
CREATE FUNCTION adjustment_orders_only_close() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'open' AND NEW.status IN ('paid', 'recovered')
       AND to_jsonb(NEW) - 'status' - 'closed_at' - 'closed_by' - 'reference'
           = to_jsonb(OLD) - 'status' - 'closed_at' - 'closed_by' - 'reference' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'adjustment orders only close, once: open to paid or recovered'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER adjustment_orders_close_once BEFORE UPDATE ON adjustment_orders
    FOR EACH ROW EXECUTE FUNCTION adjustment_orders_only_close();
CREATE TRIGGER adjustment_orders_no_delete BEFORE DELETE ON adjustment_orders
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER adjustment_orders_no_truncate BEFORE TRUNCATE ON adjustment_orders
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- A person-year's settlements in service-date order: what a replay reads, and what a registry change
-- asks ("has this person settled since that date?").
CREATE INDEX settlements_by_person_day ON settlements (person_key, service_date);

-- The ledger books adjustments as lines of kind 'adjustment': each fund and the patient, signed, summing
-- to zero (no clinic line: the clinic's credit does not change).
CREATE OR REPLACE VIEW ledger_entries AS
SELECT s.person_key, s.settlement_id, 'settlement'::text AS kind, l.account, l.amount, s.clinic_id, s.visit_type,
       extract(year FROM s.service_date)::int AS year, s.booked_on, s.created_at
FROM settlements s
CROSS JOIN LATERAL (
    VALUES ('insurance_fund', s.insurance), ('priority_care_fund', s.veteran_subsidy),
           ('aid_fund', s.hardship_aid), ('patient', s.out_of_pocket), ('clinic', -s.total)
    UNION ALL
    SELECT f.key || '_fund', f.value::bigint FROM jsonb_each_text(s.other_funds) f
) AS l(account, amount)
UNION ALL
SELECT r.person_key, r.settlement_id, 'reversal'::text, l.account, -l.amount, s.clinic_id, s.visit_type,
       extract(year FROM s.service_date)::int, r.booked_on, r.created_at
FROM reversals r
JOIN settlements s ON s.person_key = r.person_key AND s.settlement_id = r.settlement_id
CROSS JOIN LATERAL (
    VALUES ('insurance_fund', s.insurance), ('priority_care_fund', s.veteran_subsidy),
           ('aid_fund', s.hardship_aid), ('patient', s.out_of_pocket), ('clinic', -s.total)
    UNION ALL
    SELECT f.key || '_fund', f.value::bigint FROM jsonb_each_text(s.other_funds) f
) AS l(account, amount)
UNION ALL
SELECT a.person_key, a.settlement_id, 'adjustment'::text, l.account, l.amount, a.clinic_id, a.visit_type,
       a.year, a.booked_on, a.created_at
FROM adjustments a
CROSS JOIN LATERAL (
    VALUES ('insurance_fund', a.insurance), ('priority_care_fund', a.veteran_subsidy),
           ('aid_fund', a.hardship_aid), ('patient', a.out_of_pocket)
    UNION ALL
    SELECT f.key || '_fund', f.value::bigint FROM jsonb_each_text(a.other_funds) f
) AS l(account, amount);
