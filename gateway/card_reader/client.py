"""A card reader's side of the frame protocol: ``ReaderClient``, for tests and ``medsettle reader-sim``.

It speaks the frame protocol of ``adapters.card_frames`` the way a clinic's card
reader does: one TCP connection, one request at a time, every request but a
heartbeat signed with the terminal's key (fresh timestamp and nonce each time).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any, TypeVar

import msgspec

from adapters import card_frames as frames

S = TypeVar("S", bound=frames.Signed)


class ReaderClient:
    """One connection to the gateway's card-reader port."""

    def __init__(self, host: str, port: int, key_id: str, secret: str, *, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.key_id = key_id
        self.secret = secret
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> ReaderClient:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), timeout=self.timeout
        )
        return self

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
            self._writer = self._reader = None

    async def __aenter__(self) -> ReaderClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ frames

    def frame(self, kind: type[S], body: Any) -> S:
        """A signed request of class ``kind`` whose body is ``body`` encoded as MessagePack."""
        return frames.sign_frame(kind, next(self._ids), self.key_id, self.secret, msgspec.msgpack.encode(body))

    def resign(self, message: S) -> S:
        """The same request (same id and body) with a fresh timestamp, nonce and signature, as for a retry."""
        return frames.sign_frame(type(message), message.id, self.key_id, self.secret, message.body)

    async def send(self, message: frames.Frame) -> None:
        if self._writer is None:
            raise ConnectionError("not connected")
        self._writer.write(frames.encode_frame(message))
        await self._writer.drain()

    async def receive(self) -> frames.Response:
        if self._reader is None:
            raise ConnectionError("not connected")
        reply = await asyncio.wait_for(frames.read_response(self._reader), timeout=self.timeout)
        if reply is None:
            raise ConnectionError("the gateway closed the connection")
        return reply

    async def call(self, message: frames.Frame) -> frames.Response:
        await self.send(message)
        reply = await self.receive()
        if reply.id != message.id:
            raise ConnectionError(f"answer to frame {reply.id} while waiting for {message.id}")
        return reply

    # ------------------------------------------------------------ what a reader does

    async def swipe(self, person_id: str, service_date: str | None = None) -> frames.Response:
        body: dict[str, Any] = {"person_id": person_id}
        if service_date:
            body["service_date"] = service_date
        return await self.call(self.frame(frames.Swipe, body))

    async def settle(self, bill: dict[str, Any]) -> frames.Response:
        return await self.call(self.frame(frames.Settle, bill))

    async def quote(self, bill: dict[str, Any]) -> frames.Response:
        return await self.call(self.frame(frames.Quote, bill))

    async def reverse(self, settlement_id: str, request_id: str, reason: str = "") -> frames.Response:
        body = {"settlement_id": settlement_id, "request_id": request_id, "reason": reason}
        return await self.call(self.frame(frames.Reversal, body))

    async def heartbeat(self) -> frames.Response:
        return await self.call(frames.Heartbeat(id=next(self._ids)))
