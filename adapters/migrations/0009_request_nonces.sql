-- Nonces of signed requests that change something, shared by every worker and replica.
-- A captured request replayed to another process within the timestamp window must be
-- refused like one replayed to the same process. A row only needs to live until its
-- request's signed timestamp leaves the window (expires_at); the gateway prunes older rows.
-- The key is a 16-byte BLAKE2b digest of key id and nonce (adapters/nonces.py), so a row
-- is about 60 bytes however long the nonce. A settlement claims its nonce inside the read
-- it already makes, so this costs the settle path no extra round trip.
CREATE TABLE request_nonces (
    digest bytea PRIMARY KEY CHECK (octet_length(digest) = 16),
    expires_at timestamptz NOT NULL
);
