"""Terminal signing keys: created, rotated, retired and revoked; stored only encrypted.

Secrets are encrypted with AES-256-GCM under the terminal-key encryption key
(``MEDSETTLE_TERMINAL_KEY_KEY``), with the key id as associated data so a
ciphertext cannot be moved to another key's row. A terminal has at most two
active keys, so a vendor can roll out a new secret while the old one still works.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass

import asyncpg
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters import signing

MAX_ACTIVE_KEYS = 2


@dataclass(frozen=True, slots=True)
class ActiveKey:
    key_id: str
    terminal_id: str
    clinic_id: str
    role: str
    secret: str


def encrypt(kek: bytes, key_id: str, secret: str) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(kek).encrypt(nonce, secret.encode(), key_id.encode())


def decrypt(kek: bytes, key_id: str, ciphertext: bytes) -> str:
    return AESGCM(kek).decrypt(ciphertext[:12], ciphertext[12:], key_id.encode()).decode()


async def create_key(connection: asyncpg.Connection, kek: bytes, terminal_id: str, *, actor: str) -> tuple[str, str]:
    """A new active key for the terminal. The secret is returned once and never stored in clear."""
    async with connection.transaction():
        active = await connection.fetchval(
            "SELECT count(*) FROM terminal_keys WHERE terminal_id = $1 AND retired_at IS NULL", terminal_id
        )
        if active >= MAX_ACTIVE_KEYS:
            raise ValueError(f"terminal {terminal_id} already has {active} active keys; retire one first")
        key_id, secret = signing.new_key()
        await connection.execute(
            "INSERT INTO terminal_keys (key_id, terminal_id, secret_ciphertext) VALUES ($1, $2, $3)",
            key_id,
            terminal_id,
            encrypt(kek, key_id, secret),
        )
        await _audit(connection, actor, "terminal.key_created", terminal_id, {"key_id": key_id})
    return key_id, secret


async def retire_key(connection: asyncpg.Connection, key_id: str, *, actor: str) -> None:
    async with connection.transaction():
        terminal_id = await connection.fetchval(
            "UPDATE terminal_keys SET retired_at = now() WHERE key_id = $1 AND retired_at IS NULL"
            " RETURNING terminal_id",
            key_id,
        )
        if terminal_id is None:
            raise ValueError(f"no active key {key_id}")
        await _audit(connection, actor, "terminal.key_retired", terminal_id, {"key_id": key_id})


async def revoke_terminal(connection: asyncpg.Connection, terminal_id: str, *, actor: str) -> None:
    async with connection.transaction():
        done = await connection.fetchval(
            "UPDATE terminals SET revoked_at = now() WHERE terminal_id = $1 AND revoked_at IS NULL"
            " RETURNING terminal_id",
            terminal_id,
        )
        if done is None:
            raise ValueError(f"no active terminal {terminal_id}")
        await _audit(connection, actor, "terminal.revoked", terminal_id, {})


async def load_keys(
    connection: asyncpg.Connection | asyncpg.Pool, kek: bytes, only: str | None = None
) -> dict[str, ActiveKey]:
    """Every key of every terminal, active or not: a retired key or revoked terminal is refused by
    name rather than as unknown."""
    undecryptable: list[str] = []
    query = """SELECT k.key_id, k.secret_ciphertext, k.retired_at, t.terminal_id, t.clinic_id, t.role, t.revoked_at
               FROM terminal_keys k JOIN terminals t USING (terminal_id)"""
    rows = await (connection.fetch(query + " WHERE k.key_id = $1", only) if only else connection.fetch(query))
    keys = {}
    for row in rows:
        secret = ""
        if row["retired_at"] is None and row["revoked_at"] is None:
            try:
                secret = decrypt(kek, row["key_id"], bytes(row["secret_ciphertext"]))
            except InvalidTag:
                # Encrypted under another key-encryption key (a misconfigured replica or CLI):
                # the key cannot be used, but it must not stop every other terminal working.
                undecryptable.append(row["key_id"])
        keys[row["key_id"]] = ActiveKey(row["key_id"], row["terminal_id"], row["clinic_id"], row["role"], secret)
    if undecryptable:
        structlog.get_logger("medsettle").warning("terminal_keys_undecryptable", key_ids=undecryptable)
    return keys


@dataclass(frozen=True, slots=True)
class KeyListing:
    """One key as an operator sees it: never its secret."""

    key_id: str
    state: str  # "active"; "retired"; or "revoked" when its terminal is revoked
    created_at: dt.datetime
    retired_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class TerminalListing:
    terminal_id: str
    clinic_id: str
    role: str
    status: str  # "active" or "revoked"
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    rotated_at: dt.datetime | None  # when the newest key was added, if the terminal has had more than one
    keys: tuple[KeyListing, ...]


async def list_terminals(connection: asyncpg.Connection, clinic_id: str | None = None) -> list[TerminalListing]:
    """Every terminal (of one clinic if named) with its keys, oldest key first. Refuses an unknown clinic."""
    rows = await connection.fetch(
        """SELECT t.terminal_id, t.clinic_id, t.role, t.created_at, t.revoked_at,
                  k.key_id, k.created_at AS key_created_at, k.retired_at
           FROM terminals t LEFT JOIN terminal_keys k USING (terminal_id)
           WHERE $1::text IS NULL OR t.clinic_id = $1
           ORDER BY t.clinic_id, t.terminal_id, k.created_at, k.key_id""",
        clinic_id,
    )
    known = "SELECT EXISTS (SELECT 1 FROM clinics WHERE clinic_id = $1)"
    if clinic_id is not None and not rows and not await connection.fetchval(known, clinic_id):
        raise ValueError(f"no clinic {clinic_id}")
    keys: dict[str, list[KeyListing]] = {}
    terminals: dict[str, asyncpg.Record] = {}
    for row in rows:
        terminals.setdefault(row["terminal_id"], row)
        found = keys.setdefault(row["terminal_id"], [])
        if row["key_id"] is not None:
            state = "retired" if row["retired_at"] else "revoked" if row["revoked_at"] else "active"
            found.append(KeyListing(row["key_id"], state, row["key_created_at"], row["retired_at"]))
    return [
        TerminalListing(
            terminal_id=terminal_id,
            clinic_id=row["clinic_id"],
            role=row["role"],
            status="revoked" if row["revoked_at"] else "active",
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
            rotated_at=max(key.created_at for key in keys[terminal_id]) if len(keys[terminal_id]) > 1 else None,
            keys=tuple(keys[terminal_id]),
        )
        for terminal_id, row in terminals.items()
    ]


async def _audit(connection: asyncpg.Connection, actor: str, action: str, subject: str, details: dict) -> None:
    await connection.execute(
        "INSERT INTO audit_log (actor, action, subject, details) VALUES ($1, $2, $3, $4)",
        actor,
        action,
        subject,
        json.dumps(details),
    )
