"""Login links and session cookies for the finance dashboard (``gateway/dashboard/pages.py``).

Browsers cannot sign requests, so a finance (or admin) desk makes a login link with
``medsettle dashboard-link``: ``/dashboard/login?key_id=K&expires=E&sig=S`` where

    S = hex HMAC-SHA256(secret, "DASHBOARD\\n{K}\\n{E}")

under the key's secret (the same secret that signs its API requests). The gateway
checks the link in constant time, refuses it once ``E`` (Unix seconds) has passed or
when it reaches further than ``MAX_LINK_SECONDS`` ahead, refuses retired or revoked
keys (401) and keys whose role is not finance or admin (403), and then sets an
HttpOnly, SameSite=Strict cookie holding a session signed by the gateway:
``{key_id}.{expires}.{hex HMAC-SHA256(session_secret, "SESSION\\n{key_id}\\n{expires}")}``.
The session secret is derived from the terminal-key encryption key, so every
replica accepts the same sessions and a restart does not log anyone out. Each page
load checks the session's signature and expiry and that its key is still active
and still finance or admin.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import NamedTuple

DIGITS = re.compile(r"[0-9]{1,12}")  # str.isdigit() takes "²", and int() refuses 5,000 digits

COOKIE = "medsettle_dashboard"
DASHBOARD_ROLES = frozenset({"finance", "admin"})
SESSION_SECONDS = 8 * 3600
MAX_LINK_SECONDS = 24 * 3600


def login_signature(secret: str, key_id: str, expires: int) -> str:
    message = f"DASHBOARD\n{key_id}\n{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def login_link(base: str, key_id: str, secret: str, *, minutes: int = 30, now: float | None = None) -> str:
    expires = int(now if now is not None else time.time()) + minutes * 60
    sig = login_signature(secret, key_id, expires)
    return f"{base.rstrip('/')}/dashboard/login?key_id={key_id}&expires={expires}&sig={sig}"


def session_secret(key_encryption_key: bytes) -> bytes:
    """A secret for session cookies, derived (one way) from the terminal-key encryption key."""
    return hmac.new(key_encryption_key, b"medsettle dashboard session v1", hashlib.sha256).digest()


def make_session(secret: bytes, key_id: str, expires: int) -> str:
    mac = hmac.new(secret, f"SESSION\n{key_id}\n{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{key_id}.{expires}.{mac}"


class Session(NamedTuple):
    """A session cookie the gateway signed: whose key, and until when (Unix seconds)."""

    key_id: str
    expires: int


def genuine_session(secret: bytes, value: str) -> Session | None:
    """The session in the cookie when the gateway signed it, expired or not; None for anything else. An
    expired session is told apart so that the page can say the session ended rather than that it is wrong."""
    parts = value.split(".")
    if len(parts) != 3 or not DIGITS.fullmatch(parts[1]):
        return None
    key_id, expires, _ = parts
    expected = make_session(secret, key_id, int(expires))
    if not hmac.compare_digest(expected.encode(), value.encode()):
        return None
    return Session(key_id, int(expires))
