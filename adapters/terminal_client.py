"""A Python client for billing terminals: signs every request and retries safely.

Settle and reversal requests carry the terminal's ``request_id``; a retry sends
the same body with the same id, so the gateway answers with the first result
instead of settling twice. Retries happen only where the outcome is unknown or
the gateway asked for one: a timeout, a dropped connection, 503 and 429. Every
attempt is freshly signed (new timestamp and nonce).
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from typing import Any

import aiohttp

from adapters import signing

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]
    attempts: int

    @property
    def replayed(self) -> bool:
        return self.headers.get("Idempotent-Replayed") == "true"


class TerminalClient:
    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff: float = 0.2,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key_id = key_id
        self.secret = secret
        self._session = session
        self._own_session = session is None
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.attempts = attempts
        self.backoff = backoff

    async def __aenter__(self) -> TerminalClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def request(self, method: str, path: str, body: Any = None, *, retry: bool = True) -> Reply:
        """Send one signed request, retrying (same body) when the outcome is unknown or a retry is asked for."""
        payload = b"" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        attempt = 0
        while True:
            attempt += 1
            headers = signing.signed_headers(self.key_id, self.secret, method, path, payload)
            if body is not None:
                headers["Content-Type"] = "application/json"
            try:
                async with self.session.request(
                    method, self.base_url + path, data=payload or None, headers=headers, timeout=self.timeout
                ) as response:
                    text = await response.text()
                    reply = Reply(
                        response.status,
                        json.loads(text) if text and "json" in response.content_type else text,
                        dict(response.headers),
                        attempt,
                    )
                if not retry or reply.status not in RETRY_STATUSES or attempt >= self.attempts:
                    return reply
                delay = float(reply.headers.get("Retry-After", "0") or 0)
            except (TimeoutError, aiohttp.ClientConnectionError):
                if not retry or attempt >= self.attempts:
                    raise
                delay = 0.0
            await asyncio.sleep(max(delay, self.backoff * 2 ** (attempt - 1)) * random.uniform(1.0, 1.5))

    async def settle(self, bill: dict[str, Any]) -> Reply:
        return await self.request("POST", "/v1/settlements", bill)

    async def quote(self, bill: dict[str, Any]) -> Reply:
        return await self.request("POST", "/v1/quotes", bill)

    async def reverse(self, settlement_id: str, request_id: str, reason: str = "") -> Reply:
        body = {"request_id": request_id, "reason": reason}
        return await self.request("POST", f"/v1/settlements/{settlement_id}/reversal", body)

    async def get_settlement(self, settlement_id: str) -> Reply:
        return await self.request("GET", f"/v1/settlements/{settlement_id}")

    async def eligibility(self, person_id: str, service_date: str | None = None) -> Reply:
        body: dict[str, Any] = {"person_id": person_id}
        if service_date:
            body["service_date"] = service_date
        return await self.request("POST", "/v1/eligibility", body)
