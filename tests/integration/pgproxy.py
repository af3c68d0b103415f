"""A PostgreSQL wire-protocol proxy for fault tests: latency on every packet, and a lost COMMIT.

The gateway connects to the proxy on 127.0.0.1 instead of the database; the proxy
forwards bytes both ways and reads the client's side message by message, so it knows
which SQL each message makes the server run:

* a simple query (``Q``) carries its text: this is how asyncpg's
  ``connection.transaction()`` sends ``COMMIT;``;
* an extended-protocol ``Bind`` (``B``) names a statement prepared earlier by a ``Parse``
  (``P``), which carries the text. A statement run outside a transaction block commits
  at the ``Sync`` (``S``) that follows: the settle path's single write commits this way.

``drop_at`` arms a trap for the next message whose SQL matches (optionally only on a
connection that already ran a statement matching ``after``). When it springs, the
gateway's side of the connection is cut at once, so the gateway never learns the outcome:

* ``forward=True``: the message (through its ``Sync``) reaches the server first, and the
  server's side is half-closed and drained, so the server finishes it: the COMMIT happens
  and only its answer is lost;
* ``forward=False``: nothing of the message reaches the server, which sees the connection
  end inside the transaction and rolls it back: nothing happens.

Both look the same to the gateway: a connection lost in the middle of a COMMIT.
Traffic goes only to the database the test already uses.
"""

from __future__ import annotations

import asyncio
import struct
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

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
    forward: bool
    after: Matcher | None = None
    sprung: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # the server's side has ended too
    message_type: str = ""  # "Q" or "B": how the matched SQL reached the server
    sql: str = ""


@dataclass
class _Message:
    kind: str  # "" for the untyped start-up messages
    raw: bytes
    sql: str | None = None  # the SQL this message makes the server run, if any


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
        trap = Trap(matches, forward, after)
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
        sprung: Trap | None = None
        try:
            if self.unix_path:
                server_reader, server_writer = await asyncio.open_unix_connection(self.unix_path)
            else:
                server_reader, server_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(server_writer)
            cut = asyncio.Event()
            back = asyncio.create_task(self._server_to_client(server_reader, client_writer, cut))
            try:
                sprung = await self._client_to_server(client_reader, server_writer, client_writer, cut)
                if sprung is not None and sprung.forward:  # let the server answer the COMMIT and see the end
                    await asyncio.wait({back}, timeout=DRAIN_SECONDS)
            finally:
                if not back.done():
                    back.cancel()
                await asyncio.gather(back, return_exceptions=True)
                if sprung is not None:
                    sprung.finished.set()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in (client_writer, server_writer):
                if writer is not None:
                    writer.transport.abort()
                    self._writers.discard(writer)
            self._tasks.discard(task)

    async def _server_to_client(
        self, server_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, cut: asyncio.Event
    ) -> None:
        while chunk := await server_reader.read(READ_SIZE):
            if self.latency:
                await asyncio.sleep(self.latency)
            if cut.is_set():
                continue  # the answer to a cut COMMIT never reaches the gateway
            client_writer.write(chunk)
            await client_writer.drain()
        client_writer.transport.abort()

    async def _client_to_server(
        self,
        client_reader: asyncio.StreamReader,
        server_writer: asyncio.StreamWriter,
        client_writer: asyncio.StreamWriter,
        cut: asyncio.Event,
    ) -> Trap | None:
        """Forward the gateway's messages until it hangs up, or until a trap springs: that trap."""
        buffer = b""
        started = False  # past the start-up message: every message now has a type byte
        primed = False  # this connection ran a statement matching a trap's ``after``
        statements: dict[str, str] = {}  # prepared statement name -> SQL, from Parse messages
        pending_forward: list[bytes] | None = None  # a sprung forward trap waiting for its Sync
        sprung: Trap | None = None
        while True:
            chunk = await client_reader.read(READ_SIZE)
            if not chunk:
                return None
            buffer += chunk
            messages, buffer, started = _split(buffer, started, statements)
            out: list[bytes] = []
            for message in messages:
                if pending_forward is not None:
                    pending_forward.append(message.raw)
                    if message.kind == "S":
                        await self._spring(pending_forward, server_writer, client_writer, cut)
                        return sprung
                    continue
                if message.sql is not None:
                    self.statements.append((message.kind, message.sql))
                    trap = self._trap_for(message.sql, primed)
                    if trap is not None:
                        self.traps.remove(trap)
                        trap.message_type, trap.sql = message.kind, message.sql
                        trap.sprung.set()
                        if not trap.forward:
                            await self._send(server_writer, out)
                            self._cut(client_writer, cut)
                            return trap
                        if message.kind == "Q":
                            await self._spring([*out, message.raw], server_writer, client_writer, cut)
                            return trap
                        sprung, pending_forward = trap, [*out, message.raw]  # a Bind: it commits at its Sync
                        out = []
                        continue
                    if any(t.after is not None and t.after(message.sql) for t in self.traps):
                        primed = True
                out.append(message.raw)
            await self._send(server_writer, out)

    def _trap_for(self, sql: str, primed: bool) -> Trap | None:
        for trap in self.traps:
            if (trap.after is None or primed) and trap.matches(sql):
                return trap
        return None

    async def _send(self, server_writer: asyncio.StreamWriter, out: list[bytes]) -> None:
        if not out:
            return
        if self.latency:
            await asyncio.sleep(self.latency)
        server_writer.write(b"".join(out))
        await server_writer.drain()

    def _cut(self, client_writer: asyncio.StreamWriter, cut: asyncio.Event) -> None:
        cut.set()
        self.dropped += 1
        client_writer.transport.abort()

    async def _spring(
        self,
        out: list[bytes],
        server_writer: asyncio.StreamWriter,
        client_writer: asyncio.StreamWriter,
        cut: asyncio.Event,
    ) -> None:
        """Cut the gateway off, then forward the committing message and half-close the server's side:
        the server reads the COMMIT, runs it, answers into the void and sees the end."""
        self._cut(client_writer, cut)
        server_writer.write(b"".join(out))
        await server_writer.drain()
        if server_writer.can_write_eof():
            server_writer.write_eof()


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
