"""The request-signing scheme, in one place for the gateway, its terminals and card readers, and this package.

A request is signed with HMAC-SHA256 under the terminal's secret (its UTF-8 bytes)
over five lines joined by "\\n":

    METHOD          upper case, e.g. POST
    PATH            path and query exactly as sent, e.g. /v1/settlements
    TIMESTAMP       Unix seconds, decimal
    NONCE           16-64 characters of [A-Za-z0-9_-], never reused within 10 minutes
    BODY_SHA256     lower-case hex SHA-256 of the body bytes (of b"" when there is none)

and sent as headers X-Key-Id, X-Timestamp, X-Nonce and X-Signature (lower-case
hex). The gateway refuses a timestamp more than 300 seconds from its clock.
Card-reader frames use the same construction with METHOD "FRAME" and PATH the
message type.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

MAX_SKEW_SECONDS = 300
NONCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def canonical(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return "\n".join((method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest())).encode()


def sign(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    return hmac.new(secret.encode(), canonical(method, path, timestamp, nonce, body), hashlib.sha256).hexdigest()


def matches(secret: str, signature: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bool:
    """Constant-time comparison of the expected and the given signature."""
    expected = sign(secret, method, path, timestamp, nonce, body)
    return hmac.compare_digest(expected.encode(), signature.lower().encode())


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def signed_headers(key_id: str, secret: str, method: str, path: str, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    nonce = new_nonce()
    return {
        "X-Key-Id": key_id,
        "X-Timestamp": timestamp,
        "X-Nonce": nonce,
        "X-Signature": sign(secret, method, path, timestamp, nonce, body),
    }
