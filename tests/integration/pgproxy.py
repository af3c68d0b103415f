"""A PostgreSQL wire-protocol proxy for fault tests: latency, a lost COMMIT, a late one.

The gateway connects to the proxy on 127.0.0.1 instead of the database; the proxy
forwards bytes both ways and reads the client's side message by message, so it knows
which SQL each message makes the server run:

* a simple query (``Q``) carries its text: this is how asyncpg's
  ``connection.transaction()`` sends ``COMMIT;``;
* an extended-protocol ``Bind`` (``B``) names a statement prepared earlier by a ``Parse``
  (``P``), which carries the text. A statement run outside a transaction block commits
  at the ``Sync`` (``S``) that follows: the settle path's single write commits this way.

``latency`` adds a delay to every packet, each way. A trap springs on the next message
whose SQL matches (optionally only on a connection that already ran a statement matching
``after``), once:

* ``drop_at(..., forward=True)``: the message (through its ``Sync``) reaches the server,
  the gateway's side of the connection is cut at once, and the server's side is
  half-closed, so the server runs the COMMIT, answers into the void and sees the end:
  committed, and only the answer is lost;
* ``drop_at(..., forward=False)``: the gateway's side is cut and nothing of the message
  reaches the server, which sees the connection end inside the transaction and rolls it
  back: nothing happens. To the gateway both look the same;
* ``delay_at(..., seconds, what="answer")``: the message goes through at once, the server
  runs it, and its answer is held back: a COMMIT done but slow to be confirmed;
* ``delay_at(..., seconds, what="message")``: the message itself is held back, so the
  server runs it late, possibly after the gateway gave up on it and a retry went through.

A delay given ``release=`` (an ``asyncio.Event``) ends when the test sets it, ``seconds``
being only the bound: the test, not the machine's speed, decides what happens first.

``Trap.finished`` is set once the server has answered the trapped message (or, for a
dropped one, once the server's side has ended). Traffic goes only to the database the
test already uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

SSL_REQUEST = 80877103
GSS_REQUEST = 80877104
CANCEL_REQUEST = 80877102
READ_SIZE = 65536
DRAIN_SECONDS = 5.0  # how long a forwarded COMMIT's server side may take to finish after the cut

Matcher = Callable[[str], bool]


def is_commit(sql: str) -> bool:
    return sql.strip().rstrip(";").strip().upper() in ("COMMIT", "END")


@dataclass
class Trap:
    matches: Matcher
    action: Literal["drop", "delay"]
    forward: bool = True  # drop: after forwarding the message, or before
    seconds: float = 0.0  # delay: how long
    delay_what: Literal["answer", "message"] = "answer"
    release: asyncio.Event | None = None  # delay: ends early when set
    after: Matcher | None = None
    sprung: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # the server is done with the message
    message_type: str = ""  # "Q" or "B": how the matched SQL reached the server
    sql: str = ""


@dataclass
class _Message:
    kind: str  # "" for the untyped start-up messages
    raw: bytes
    sql: str | None = None  # the SQL this message makes the server run, if any


@dataclass
class _Link:
    """One proxied connection: what both directions share."""

    client_writer: asyncio.StreamWriter
    server_writer: asyncio.StreamWriter
    cut: bool = False  # the gateway's side is gone; the server's answers go nowhere
    hold_answers_until: float = 0.0  # loop time
    hold_release: asyncio.Event | None = None  # ends the hold on answers early
    awaiting_answer: Trap | None = None  # its message went out; the next bytes from the server answer it


class PgProxy:
    def __init__(self, database_url: str) -> None:
        parts = urllib.parse.urlsplit(database_url)
        query = urllib.parse.parse_qs(parts.query)
        host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
        port = int(query.get("port", [parts.port or 5432])[0])
        # pgserver's embedded database listens on a Unix socket (``?host=/folder``).
        self.unix_path = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None
        self.upstream = (host, port)
        self.database_url = database_url
        self.latency = 0.0  # seconds added to every packet, each way
        self.traps: list[Trap] = []
        self.statements: deque[tuple[str, str]] = deque(maxlen=2000)  # (message type, SQL) seen lately
        self.connections = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> PgProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """The database URL, pointed at the proxy (without TLS, so the proxy can read the messages)."""
        parts = urllib.parse.urlsplit(self.database_url)
        query = {key: value for key, value in urllib.parse.parse_qsl(parts.query) if key not in ("host", "port")}
        query["sslmode"] = "disable"
        credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urllib.parse.urlunsplit(
            parts._replace(netloc=f"{credentials}127.0.0.1:{self.port}", query=urllib.parse.urlencode(query))
        )

    def drop_at(self, matches: Matcher, *, forward: bool, after: Matcher | None = None) -> Trap:
        trap = Trap(matches, "drop", forward=forward, after=after)
        self.traps.append(trap)
        return trap

    def delay_at(
        self,
        matches: Matcher,
        seconds: float,
        *,
        what: Literal["answer", "message"] = "answer",
        after: Matcher | None = None,
        release: asyncio.Event | None = None,
    ) -> Trap:
        trap = Trap(matches, "delay", seconds=seconds, delay_what=what, release=release, after=after)
        self.traps.append(trap)
        return trap

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> PgProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ one client connection

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_writer)
        self.connections += 1
        server_writer: asyncio.StreamWriter | None = None
        dropped: Trap | None = None
        try:
            if self.unix_path:
                server_reader, server_writer = await asyncio.open_unix_connection(self.unix_path)
            else:
                server_reader, server_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(server_writer)
            link = _Link(client_writer, server_writer)
            back = asyncio.create_task(self._server_to_client(server_reader, link))
            try:
                dropped = await self._client_to_server(client_reader, link)
                # A forwarded COMMIT whose gateway was cut off, or a delayed message still on its way when the
                # gateway hung up: the server gets it (bytes in flight arrive), answers, then sees the end.
                if (dropped is not None and dropped.forward) or link.awaiting_answer is not None:
                    if server_writer.can_write_eof():
                        server_writer.write_eof()
                    await asyncio.wait({back}, timeout=DRAIN_SECONDS)
            finally:
                if not back.done():
                    back.cancel()
                await asyncio.gather(back, return_exceptions=True)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if dropped is not None:
                dropped.finished.set()
            for writer in (client_writer, server_writer):
                if writer is not None:
                    writer.transport.abort()
                    self._writers.discard(writer)
            self._tasks.discard(task)

    async def _server_to_client(self, server_reader: asyncio.StreamReader, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        while chunk := await server_reader.read(READ_SIZE):
            if link.awaiting_answer is not None:
                link.awaiting_answer.finished.set()
                link.awaiting_answer = None
            if self.latency:
                await asyncio.sleep(self.latency)
            if (held := link.hold_answers_until - loop.time()) > 0:
                await _hold(held, link.hold_release)
            if link.cut:
                continue  # the answer to a cut COMMIT never reaches the gateway
            link.client_writer.write(chunk)
            await link.client_writer.drain()
        link.client_writer.transport.abort()

    async def _client_to_server(self, client_reader: asyncio.StreamReader, link: _Link) -> Trap | None:
        """Forward the gateway's messages until it hangs up (None), or until a drop trap springs (that trap)."""
        loop = asyncio.get_running_loop()
        buffer = b""
        started = False  # past the start-up message: every message now has a type byte
        primed = False  # this connection ran a statement matching a trap's ``after``
        statements: dict[str, str] = {}  # prepared statement name -> SQL, from Parse messages
        dropping: Trap | None = None  # a forward drop waiting for the Sync of its Bind
        while True:
            chunk = await client_reader.read(READ_SIZE)
            if not chunk:
                return None
            buffer += chunk
            messages, buffer, started = _split(buffer, started, statements)
            out: list[bytes] = []
            for message in messages:
                if dropping is not None:
                    out.append(message.raw)
                    if message.kind == "S":
                        await self._cut_after(out, link)
                        return dropping
                    continue
                trap = None
                if message.sql is not None:
                    self.statements.append((message.kind, message.sql))
                    trap = self._trap_for(message.sql, primed)
                    if any(t.after is not None and t.after(message.sql) for t in self.traps):
                        primed = True
                if trap is None:
                    out.append(message.raw)
                    continue
                self.traps.remove(trap)
                trap.message_type, trap.sql = message.kind, message.sql or ""
                trap.sprung.set()
                if trap.action == "delay":
                    if trap.delay_what == "message":
                        await self._send(link, out)
                        out = []
                        await _hold(trap.seconds, trap.release)
                    else:
                        link.hold_answers_until = loop.time() + trap.seconds
                        link.hold_release = trap.release
                    link.awaiting_answer = trap
                    out.append(message.raw)
                elif not trap.forward:
                    await self._send(link, out)
                    self._cut(link)
                    return trap
                elif message.kind == "Q":
                    await self._cut_after([*out, message.raw], link)
                    return trap
                else:
                    dropping, out = trap, [*out, message.raw]  # a Bind: it commits at its Sync
            await self._send(link, out)

    def _trap_for(self, sql: str, primed: bool) -> Trap | None:
        for trap in self.traps:
            if (trap.after is None or primed) and trap.matches(sql):
                return trap
        return None

    async def _send(self, link: _Link, out: list[bytes]) -> None:
        if not out:
            return
        if self.latency:
            await asyncio.sleep(self.latency)
        link.server_writer.write(b"".join(out))
        await link.server_writer.drain()

    def _cut(self, link: _Link) -> None:
        link.cut = True
        self.dropped += 1
        link.client_writer.transport.abort()

    async def _cut_after(self, out: list[bytes], link: _Link) -> None:
        """Cut the gateway off, then forward the committing message and half-close the server's side:
        the server reads the COMMIT, runs it, answers into the void and sees the end."""
        self._cut(link)
        link.server_writer.write(b"".join(out))
        await link.server_writer.drain()
        if link.server_writer.can_write_eof():
            link.server_writer.write_eof()


async def _hold(seconds: float, release: asyncio.Event | None) -> None:
    """Wait ``seconds``, or less if ``release`` is set first."""
    if release is None:
        await asyncio.sleep(seconds)
    else:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), seconds)


def _cstring(payload: bytes, start: int) -> tuple[str, int]:
    end = payload.index(b"\x00", start)
    return payload[start:end].decode("utf-8", "replace"), end + 1


def _split(buffer: bytes, started: bool, statements: dict[str, str]) -> tuple[list[_Message], bytes, bool]:
    """The whole messages at the front of ``buffer``, the rest, and whether start-up is over."""
    messages = []
    while True:
        if not started:
            if len(buffer) < 8:
                break
            (length,) = struct.unpack("!I", buffer[:4])
            if len(buffer) < length:
                break
            (code,) = struct.unpack("!I", buffer[4:8])
            messages.append(_Message("", buffer[:length]))
            buffer = buffer[length:]
            if code not in (SSL_REQUEST, GSS_REQUEST, CANCEL_REQUEST):
                started = True  # the start-up message proper
            continue
        if len(buffer) < 5:
            break
        kind = chr(buffer[0])
        (length,) = struct.unpack("!I", buffer[1:5])
        if len(buffer) < 1 + length:
            break
        raw, buffer = buffer[: 1 + length], buffer[1 + length :]
        payload = raw[5:]
        sql = None
        if kind == "Q":
            sql, _ = _cstring(payload, 0)
        elif kind == "P":
            name, position = _cstring(payload, 0)
            statements[name], _ = _cstring(payload, position)
        elif kind == "B":
            _portal, position = _cstring(payload, 0)
            name, _ = _cstring(payload, position)
            sql = statements.get(name, "")
        messages.append(_Message(kind, raw, sql))
    return messages, buffer, started
