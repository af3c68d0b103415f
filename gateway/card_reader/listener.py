"""The TCP listener for village clinic card readers (frames in ``adapters.card_frames``).

It is a second door into the same gateway: the HTTP app's Service, Authenticator
and RateLimiter objects, so a frame is verified with the same nonce cache, clock
window and revocation as a signed HTTP request, a settle is idempotent per
terminal and request id across both doors, a terminal acts only for its own
clinic, and every refusal carries the same stable code as the HTTP problem.
Only the ``terminal`` role may use it.

Each connection is served one request at a time. A frame that cannot be read
closes that connection (the reader reconnects and resends; a settle is
idempotent); a refusal is an ``error`` frame and the connection stays open.
Nothing a peer sends can stop the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from aiohttp import web

from adapters import card_frames as frames
from adapters.db import is_database_error
from adapters.nonces import NonceClaim
from gateway import api_models as api
from gateway import bodies
from gateway.app_keys import authenticator_key, limiter_key, metrics_key, service_key, settings_key
from gateway.auth import Authenticator, RateLimiter
from gateway.logs import log
from gateway.metrics import Metrics
from gateway.problems import ApiError, shown, unavailable
from gateway.service import Answer, Service, Terminal
from settlement.errors import SettlementError

IDLE_TIMEOUT = 30.0  # seconds a connection may take to send its next whole frame
# A bill and its answer (a breakdown per line) must each fit in one 64 KiB frame: 200 lines
# with the longest codes and names are sent in about 60 KiB and answered in about 40 KiB.
# Longer bills go over HTTP.
READER_MAX_LINES = 200
ROLES = frozenset({"terminal"})


class ReversalBody(api.ReversalRequest, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of a ``reversal`` frame: HTTP's reversal body, field for field and constraint for
    constraint, plus the settlement, which HTTP names in the path."""

    settlement_id: Annotated[str, msgspec.Meta(max_length=64)]


for _model in (api.EligibilityRequest, api.SettleRequest, ReversalBody):
    bodies.decoders(_model)  # built once at import, never on the request path


@dataclass(eq=False, slots=True)  # by identity: kept in a set
class _Connection:
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None
    busy: bool = False


Outcome = tuple[int, bool, dict[str, Any]]  # status, replayed, body


class CardReaderListener:
    def __init__(
        self,
        service: Service,
        authenticator: Authenticator,
        limiter: RateLimiter,
        metrics: Metrics,
        *,
        max_lines: int = READER_MAX_LINES,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.service = service
        self.authenticator = authenticator
        self.limiter = limiter
        self.metrics = metrics
        self.max_lines = min(max_lines, READER_MAX_LINES)
        self.idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._closing = False
        self._handlers: dict[type[frames.Signed], Callable[[Terminal, bytes], Awaitable[Outcome]]] = {
            frames.Swipe: self._swipe,
            frames.Settle: self._settle,
            frames.Quote: self._quote,
            frames.Reversal: self._reversal,
        }

    # ------------------------------------------------------------ lifecycle

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, reuse_port=reuse_port)

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def close(self, timeout: float) -> None:
        """Stop accepting; close idle connections at once; give requests in flight ``timeout`` seconds."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            if not connection.busy:
                connection.writer.close()  # the read loop sees the end of the stream and returns
        tasks = [connection.task for connection in self._connections if connection.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._server is not None:
            await self._server.wait_closed()

    # ------------------------------------------------------------ one connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        connection = _Connection(writer, asyncio.current_task())
        self._connections.add(connection)
        try:
            while not self._closing:
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        message = await frames.read_request(reader)
                except TimeoutError:
                    log.info("reader_idle_closed", peer=peer, idle_seconds=self.idle_timeout)
                    break
                except frames.FrameError as error:
                    if not self._closing:
                        # The reason and the announced length at most: never the frame's bytes.
                        log.warning("reader_bad_frame", peer=peer, reason=error.reason, detail=error.detail)
                        self.metrics.reader_frames.labels("invalid", error.reason).inc()
                    break
                if message is None:
                    break
                connection.busy = True
                try:
                    reply = await self._answer(message, peer)
                    writer.write(_encode(reply))
                    await writer.drain()
                finally:
                    connection.busy = False
        except OSError as error:  # the peer went away, e.g. while its answer was being written
            log.info("reader_disconnected", peer=peer, error=type(error).__name__)
        except Exception:  # never let one connection take the listener down
            log.exception("reader_connection_failed", peer=peer)
        finally:
            self._connections.discard(connection)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _answer(self, message: frames.Request, peer: str) -> frames.Response:
        kind = frames.type_name(message)
        if isinstance(message, frames.Heartbeat):  # counted, not logged: readers send them all day
            self.metrics.reader_frames.labels(kind, "ok").inc()
            return frames.HeartbeatAck(id=message.id, time=int(time.time()))
        started = time.perf_counter()
        caller: Terminal | None = None
        verified = None
        write = False
        reply: frames.Response
        try:
            write = isinstance(message, frames.Settle | frames.Reversal)  # their nonces are claimed in PostgreSQL
            verified = await self.authenticator.verify(
                frames.FRAME_METHOD, kind, frames.signature_headers(message), message.body, claimed_in_database=write
            )
            if verified.role not in ROLES:
                raise ApiError(403, "forbidden", f"the {verified.role} role may not use the card reader")
            self.limiter.check(verified.terminal_id)
            nonce = NonceClaim.of(verified.key_id, verified.nonce, verified.nonce_expires_at) if write else None
            caller = Terminal(verified.terminal_id, verified.clinic_id, verified.role, nonce)
            status, replayed, body = await self._handlers[type(message)](caller, message.body)
            reply = frames.Result(id=message.id, status=status, replayed=replayed, body=body)
            outcome = "replayed" if replayed else "ok"
        except ApiError as error:
            reply = _error(message.id, error)
        except SettlementError as refused:
            reply = _error(message.id, ApiError.from_engine(refused))
        except Exception as unexpected:
            if is_database_error(unexpected):
                log.warning("database_unavailable", error=type(unexpected).__name__, peer=peer)
                reply = _error(message.id, unavailable())
            else:
                log.exception("reader_unhandled_error", peer=peer, type=kind)
                reply = _error(
                    message.id, ApiError(500, "internal_error", "an internal error occurred; it has been logged")
                )
        if isinstance(reply, frames.Error):
            outcome = "refused" if reply.status < 500 else "failed"
            if write and verified is not None:  # refused before or after its claim: remember its nonce
                self.authenticator.remember(verified)
            self.metrics.errors.labels(reply.code).inc()
        self.metrics.reader_frames.labels(kind, outcome).inc()
        log.info(
            "reader_frame",
            type=kind,
            frame_id=message.id,
            status=reply.status,
            replayed=isinstance(reply, frames.Result) and reply.replayed,
            code=reply.code if isinstance(reply, frames.Error) else None,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            terminal=caller.terminal_id if caller else None,
            clinic=caller.clinic_id if caller else None,
            peer=peer,
        )
        return reply

    # ------------------------------------------------------------ the four signed requests

    async def _swipe(self, terminal: Terminal, body: bytes) -> Outcome:
        request = bodies.decode(api.EligibilityRequest, body, msgpack=True)
        return 200, False, msgspec.to_builtins(await self.service.eligibility(terminal, request))

    async def _settle(self, terminal: Terminal, body: bytes) -> Outcome:
        request = bodies.decode(api.SettleRequest, body, msgpack=True)
        self._check_lines(request)
        return _stored(await self.service.settle(terminal, request))

    async def _quote(self, terminal: Terminal, body: bytes) -> Outcome:
        request = bodies.decode(api.SettleRequest, body, msgpack=True)
        self._check_lines(request)
        return 200, False, msgspec.to_builtins(await self.service.quote(terminal, request))

    async def _reversal(self, terminal: Terminal, body: bytes) -> Outcome:
        request = bodies.decode(ReversalBody, body, msgpack=True)
        try:
            settlement_id = uuid.UUID(request.settlement_id)
        except ValueError:
            raise ApiError(404, "settlement_not_found", "no such settlement", field="settlement_id") from None
        reversal = api.ReversalRequest(request_id=request.request_id, reason=request.reason)
        await self.service.claim_nonce(terminal)  # a settlement claims its nonce inside its first read
        return _stored(await self.service.reverse(terminal, settlement_id, reversal))

    def _check_lines(self, request: api.SettleRequest) -> None:
        if len(request.items) > self.max_lines:
            raise ApiError(
                413,
                "too_many_lines",
                f"a bill sent by a card reader may have at most {self.max_lines} lines",
                field="items",
            )


card_reader_key = web.AppKey("card_reader", CardReaderListener)


def _stored(answer: Answer) -> Outcome:
    """A stored settle or reversal answer: 201 when new, 200 and marked replayed when it is the first answer again."""
    body = msgspec.to_builtins(answer.value)
    return (200, True, body) if answer.replayed else (201, False, body)


def _error(frame_id: int, error: ApiError) -> frames.Error:
    """A refusal as an ``error`` frame: what the HTTP problem would say, a national ID in it masked."""
    return frames.Error(
        id=frame_id,
        status=error.status,
        code=error.code,
        detail=shown(error.detail),
        field=None if error.field is None else shown(error.field),
        retry_after=error.retry_after,
    )


def _encode(reply: frames.Response) -> bytes:
    try:
        return frames.encode_frame(reply)
    except frames.OversizedFrame:
        log.error("reader_answer_too_large", type=frames.type_name(reply), frame_id=reply.id)
        return frames.encode_frame(
            frames.Error(id=reply.id, status=500, code="internal_error", detail="the answer does not fit in a frame")
        )


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


async def card_reader_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: listen for card readers on MEDSETTLE_READER_PORT (0: not at all) while the app runs.

    Registered last (gateway/http/app.py), so it starts once the service exists and stops
    (finishing requests in flight) before the store's batch lanes stop and the pool closes.
    """
    settings = app[settings_key]
    if not settings.reader_port:
        yield
        return
    listener = CardReaderListener(
        app[service_key],
        app[authenticator_key],
        app[limiter_key],
        app[metrics_key],
        max_lines=settings.max_lines,
    )
    # Under --workers N every worker listens on the reader port too and the kernel spreads readers.
    await listener.start(settings.host, settings.reader_port, reuse_port=settings.workers > 1)
    app[card_reader_key] = listener
    log.info("card_reader_listening", host=settings.host, port=listener.port)
    try:
        yield
    finally:
        await listener.close(settings.shutdown_timeout)
        log.info("card_reader_stopped")
