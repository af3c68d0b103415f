-- A reversed bill's orders (issue 17): a reversal takes back every adjustment booked on its bill, in its own
-- transaction (adapters/readjudication.py ``take_back``). An order still open that holds money of those
-- adjustments would pay, or claim, money that no longer exists; the reversal cancels it in the same
-- transaction, so finance can no longer close it, and names the re-adjudication the reversal queued, which
-- re-issues what is still owed of it (its amount less what the reversal took back) as a new order. An order
-- already paid or recovered stays so: what the reversal took back then shows as a new order (or a reported
-- overpayment) of the reversal's re-adjudication.
--
-- * ``adjustment_orders``: status ``cancelled`` (a payable or a recovery order, only from open, once), with
--   the re-adjudication that re-issues it (``cancelled_by``), when and why.
-- * ``readjudications.carried``: what a re-adjudication's orders hold beyond its own adjustments, per fund,
--   positive when owed to the patient: the orders it re-issues (cancelled by it) and the parts of reported or
--   waived orders whose bill it reversed (that money never moved, so it goes with the bill). ``medsettle check``
--   proves orders = adjustments + carried, per re-adjudication and fund.

ALTER TABLE adjustment_orders
    ADD COLUMN cancelled_by  bigint,
    ADD COLUMN cancelled_at  timestamptz,
    ADD COLUMN cancel_reason text,
    ADD CONSTRAINT adjustment_orders_cancelled_by_fkey
        FOREIGN KEY (person_key, cancelled_by) REFERENCES readjudications (person_key, readjudication_id),
    ADD CONSTRAINT adjustment_orders_cancelled_check CHECK (
        (status = 'cancelled') = (cancelled_by IS NOT NULL)
        AND (status = 'cancelled') = (cancelled_at IS NOT NULL)
        AND (status = 'cancelled') = (cancel_reason IS NOT NULL)),
    DROP CONSTRAINT adjustment_orders_status_check,
    ADD CONSTRAINT adjustment_orders_status_check
        CHECK (status IN ('open', 'paid', 'recovered', 'waived', 'reported', 'cancelled')),
    DROP CONSTRAINT adjustment_orders_check1,
    ADD CONSTRAINT adjustment_orders_kind_status_check
        CHECK (CASE kind WHEN 'payable' THEN status IN ('open', 'paid', 'waived', 'cancelled')
                         WHEN 'recovery' THEN status IN ('open', 'recovered', 'waived', 'cancelled')
                         ELSE status IN ('reported', 'waived') END);

ALTER TABLE readjudications
    ADD COLUMN carried jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT readjudications_carried_valid CHECK (jsonb_typeof(carried) = 'object');

-- An order changes once: open to paid (a payable order) or recovered (a recovery order), by finance; or open
-- to cancelled, by the reversal of a bill whose money it held. Nothing else in it ever changes, and no order
-- is removed.
CREATE OR REPLACE FUNCTION adjustment_orders_only_close() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'open' AND NEW.status IN ('paid', 'recovered')
       AND to_jsonb(NEW) - 'status' - 'closed_at' - 'closed_by' - 'reference'
           = to_jsonb(OLD) - 'status' - 'closed_at' - 'closed_by' - 'reference' THEN
        RETURN NEW;
    END IF;
    IF OLD.status = 'open' AND NEW.status = 'cancelled'
       AND to_jsonb(NEW) - 'status' - 'cancelled_by' - 'cancelled_at' - 'cancel_reason'
           = to_jsonb(OLD) - 'status' - 'cancelled_by' - 'cancelled_at' - 'cancel_reason' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'adjustment orders only close, once: open to paid, recovered or cancelled'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
