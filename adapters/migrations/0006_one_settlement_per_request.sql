-- Defence in depth for "a request id never settles twice": even after its
-- idempotency record has aged out, the same terminal and request id cannot write a
-- second settlement for the person. (person_key leads so the index suits Citus.)
CREATE UNIQUE INDEX settlements_one_per_request ON settlements (person_key, terminal_id, request_id);
