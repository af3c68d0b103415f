"""The request-signing scheme (README, "Signing requests"), and the making of terminal keys.

The scheme's one home is ``medsettle_client.signing``, published with the client package
(clients/python), so that the gateway checks exactly what a terminal signs; the gateway adds
only the making of keys.
"""

from __future__ import annotations

import secrets

from medsettle_client.signing import (
    MAX_SKEW_SECONDS,
    NONCE_PATTERN,
    canonical,
    matches,
    new_nonce,
    sign,
    signed_headers,
)

__all__ = [
    "MAX_SKEW_SECONDS",
    "NONCE_PATTERN",
    "canonical",
    "matches",
    "new_key",
    "new_nonce",
    "sign",
    "signed_headers",
]


def new_key() -> tuple[str, str]:
    """A fresh (key_id, secret) pair for a terminal."""
    return f"k_{secrets.token_hex(8)}", f"sk_{secrets.token_urlsafe(32)}"
