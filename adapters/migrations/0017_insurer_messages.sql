-- Messages to the insurer's core (DESIGN Part 2, "Beside the insurer's core"; docs/insurer.md).
--
-- Every message that can change money at the insurer (a settle, a cancel) is recorded here, in its own
-- committed transaction, BEFORE it is sent; its state then follows what is known of its outcome, so no
-- remote outcome is ever left unknown:
--
--   settle:  sent -> answered -> committed       the insurer settled; the local settlement committed
--                                                 (the flip to committed is in the settlement's transaction)
--            sent -> refused | unsent             the insurer said no / the message never left
--            sent -> reversing -> reversed        outcome unknown (timeout, reset, bad answer): reversed
--                                                 by its message id (2601) before the terminal is answered
--            answered -> cancelling -> cancelled  the local commit never came: cancelled at the insurer
--   cancel:  sent -> answered -> committed       the insurer cancelled; the local reversal committed
--            sent -> refused | unsent | superseded  a cancel is idempotent: an unknown one is sent again
--
-- A background sweeper (adapters/insurer_messages.py) finishes what a crash or a lost connection left
-- open. At most one open message per request (insurer_messages_one_open), so a terminal's retry racing
-- its first attempt is told to wait instead of settling twice at the insurer.
--
-- The message id is the interface's: institution code (12) + yyyyMMddHHmmss + a 4-digit sequence, unique
-- per attempt. The sequence cycles through 9,000 values (9000-9999 are left to each process's sign-ins,
-- which change nothing and are not recorded), so ids cannot repeat unless more than 9,000 messages are
-- made in one second.

CREATE SEQUENCE insurer_message_sequence MINVALUE 0 MAXVALUE 8999 CYCLE;

CREATE TABLE insurer_messages (
    person_key        bytea NOT NULL CHECK (length(person_key) = 32),
    message_id        text NOT NULL CHECK (message_id ~ '^[A-Z0-9]{12}[0-9]{18}$'),
    kind              text NOT NULL CHECK (kind IN ('settle', 'cancel')),
    transaction_code  text NOT NULL CHECK (transaction_code ~ '^[0-9]{4}$'),
    terminal_id       text NOT NULL,
    request_id        text NOT NULL,
    visit_id          text NOT NULL,  -- the insurer's visit id (mdtrt_id) the settle was sent under
    clinic_id         text NOT NULL,
    service_date      date NOT NULL,
    -- settle: the local settlement, once committed; cancel: the settlement being reversed.
    settlement_id     uuid,
    state             text NOT NULL CHECK (state IN ('sent', 'answered', 'committed', 'refused', 'unsent',
                                                     'reversing', 'reversed', 'cancelling', 'cancelled',
                                                     'superseded')),
    insurer_settlement_id text,       -- the insurer's setl_id (a cancel: of the settlement it cancels)
    paid              jsonb,          -- settle: what the insurer paid, by fund code, in fen, as it answered
    request           jsonb,          -- cancel: the reversal to finish locally once the insurer has cancelled
    detail            text,           -- the last thing learnt: a refusal's code and message, a reversal's outcome
    tries             integer NOT NULL DEFAULT 0 CHECK (tries >= 0),  -- sweeper passes over this message
    sent_at           timestamptz NOT NULL DEFAULT now(),
    answered_at       timestamptz,
    finished_at       timestamptz,
    PRIMARY KEY (person_key, message_id),
    CONSTRAINT insurer_messages_message_id UNIQUE (message_id),
    CONSTRAINT insurer_messages_paid_valid CHECK (paid IS NULL OR jsonb_typeof(paid) = 'object'),
    CONSTRAINT insurer_messages_answered CHECK (
        state NOT IN ('answered', 'committed', 'cancelling', 'cancelled') OR insurer_settlement_id IS NOT NULL)
);

CREATE UNIQUE INDEX insurer_messages_one_open ON insurer_messages (person_key, terminal_id, request_id, kind)
    WHERE state IN ('sent', 'answered', 'reversing', 'cancelling');
CREATE INDEX insurer_messages_open ON insurer_messages (sent_at)
    WHERE state IN ('sent', 'answered', 'reversing', 'cancelling');
CREATE INDEX insurer_messages_by_request ON insurer_messages (person_key, terminal_id, request_id);
CREATE INDEX insurer_messages_by_day ON insurer_messages (service_date, clinic_id);
