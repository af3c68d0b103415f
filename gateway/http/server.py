"""The HTTP connection layer under the app: aiohttp's protocol, with what a gateway on a public network needs.

aiohttp parses each connection's bytes in its ``RequestHandler`` before the app sees a request.
Two things happen there that the app's middleware cannot reach:

1. **A header timeout.** aiohttp waits for the rest of a partial request header as long as a
   connection may stay idle (the keep-alive timeout), so a client can hold a connection, and
   the memory behind it, with a few bytes a minute. Here a request's header must arrive whole
   within ``MEDSETTLE_HEADER_TIMEOUT`` seconds of the connection opening or of the request's
   first byte. Past that the connection is closed, after a 408 ``request_timeout`` problem if
   part of a header had come. An idle keep-alive connection between requests is left alone
   (the keep-alive timeout closes it). The body's own timeout is the app's (``gateway.http.app``).
2. **Problems for what aiohttp refuses itself.** A header line too long or too many headers
   (431 ``headers_too_large``) and bytes that are not HTTP/1.1 (400 ``bad_request``) got a
   text/plain answer and an ERROR log line with a traceback, for what is the client's mistake.
   They get ``application/problem+json`` like every other refusal, and one ``request_refused``
   log line.

aiohttp's ``AppRunner`` has no way to choose the protocol class, so ``GatewayRunner`` makes
the server itself and ``run`` stands in for ``web.run_app`` (signals, graceful exit, cleanup
the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_runner import GracefulExit

from gateway.app_keys import metrics_key, settings_key
from gateway.http.responses import PROBLEM, problem_body
from gateway.logs import fresh_request_id, log
from gateway.metrics import Metrics
from gateway.problems import ApiError

KEEPALIVE_TIMEOUT = 75.0  # what web.run_app used: longer than a load balancer's idle timeout (60 s on most)


class GatewayProtocol(RequestHandler):
    """One HTTP connection: aiohttp's handler, plus the header timeout and problem+json refusals."""

    def __init__(
        self, manager: web.Server, *, header_timeout: float, metrics: Metrics | None = None, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self.header_timeout = header_timeout
        self.metrics = metrics
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0  # bytes received of a header not yet complete
        self._handling = False  # a request is being answered
        self._body: StreamReader | None = None  # the body of the request answered last

    # ------------------------------------------------------------ the header timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_header_timer()  # a connection is opened to send a request: the clock starts now

    def data_received(self, data: bytes) -> None:
        if data and not self._handling and (self._body is None or self._body.is_eof()):
            # Between requests (what is left of the last body does not count): a new request's header.
            self._header_bytes += len(data)
            if self._header_timer is None:
                self._start_header_timer()
        super().data_received(data)

    def request_started(self, body: StreamReader) -> None:
        """A request's header has arrived whole and its answer begins (called by ``_GatewayServer``)."""
        self._handling = True
        self._body = body
        self._header_bytes = 0
        self._stop_header_timer()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._handling = False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._header_timer = asyncio.get_running_loop().call_later(self.header_timeout, self._header_timed_out)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._handling or self.transport is None:
            return
        if self._header_bytes:
            error = ApiError(
                408, "request_timeout", f"the request header did not arrive whole within {self.header_timeout:g} s"
            )
            request_id = fresh_request_id()
            self._count(error)
            log.info("request_refused", status=408, code=error.code, request_id=request_id, peer=self._peer())
            self.transport.write(_raw_problem(error, request_id))
        self.force_close()  # the answer, if any, is flushed before the socket closes

    # ------------------------------------------------------------ refusals before the app

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse (or to a handler that escaped the app's
        middleware), as a problem; it always closes the connection."""
        if request.writer.output_size > 0:  # as aiohttp: an answer already under way cannot be replaced
            raise ConnectionError("the answer was already being sent when the request failed")
        error = self._refusal(status, exc)
        request_id = fresh_request_id()
        self._count(error)
        if error.status >= 500:
            log.error("unhandled_error", request_id=request_id, exc_info=exc)
        else:
            log.info(
                "request_refused",
                status=error.status,
                code=error.code,
                detail=error.detail,
                request_id=request_id,
                peer=self._peer(),
            )
        response = web.Response(
            body=problem_body(error, request_id),
            status=error.status,
            content_type=PROBLEM,
            headers={"X-Request-Id": request_id},
        )
        response.force_close()
        return response

    def _refusal(self, status: int, exc: BaseException | None) -> ApiError:
        if status >= 500:
            return ApiError(500, "internal_error", "an internal error occurred; it has been logged")
        if isinstance(exc, LineTooLong):
            limit = max(self.max_line_size, self.max_field_size)
            return ApiError(431, "headers_too_large", f"the request line or a header is longer than {limit} bytes")
        if isinstance(exc, BadHttpMessage) and "too many headers" in exc.message.lower():
            return ApiError(431, "headers_too_large", f"the request has more than {self.max_headers} headers")
        # aiohttp's reason, first line only: the lines after it quote the client's bytes.
        reason = (exc.message if isinstance(exc, BadHttpMessage) else "").split("\n", 1)[0].rstrip(": ")
        return ApiError(400, "bad_request", "the request is not valid HTTP/1.1" + (f": {reason}" if reason else ""))

    def _count(self, error: ApiError) -> None:
        if self.metrics is not None:
            self.metrics.errors.labels(error.code).inc()

    def _peer(self) -> str | None:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else None


def _raw_problem(error: ApiError, request_id: str) -> bytes:
    """A whole HTTP/1.1 answer, for a connection that has no request object to answer through."""
    body = problem_body(error, request_id)
    head = (
        f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n"
        f"Content-Type: {PROBLEM}\r\nContent-Length: {len(body)}\r\n"
        f"X-Request-Id: {request_id}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _GatewayServer(web.Server):
    """aiohttp's server, making a ``GatewayProtocol`` for each connection and telling it when a request starts."""

    def __init__(self, handler: Any, *, request_factory: Any, **kwargs: Any) -> None:
        def started(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
            if isinstance(protocol, GatewayProtocol):
                protocol.request_started(payload)
            request: web.BaseRequest = request_factory(message, payload, protocol, writer, task)
            return request

        super().__init__(handler, request_factory=started, **kwargs)

    def __call__(self) -> RequestHandler:
        return GatewayProtocol(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` serving each connection with ``GatewayProtocol``.

    Its keyword arguments go to every connection: aiohttp's (``keepalive_timeout``,
    ``lingering_time``, ...) and ``header_timeout`` and ``metrics``.
    """

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # runs the app's start-up; builds aiohttp's server, unused
        return _GatewayServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **made._kwargs,  # the runner's keyword arguments, with the app's debug flag
        )


def runner_for(app: web.Application, *, handle_signals: bool = False) -> GatewayRunner:
    """The runner for ``app`` with its settings' timeouts: the one ``medsettle serve`` uses."""
    settings = app[settings_key]
    return GatewayRunner(
        app,
        handle_signals=handle_signals,
        shutdown_timeout=settings.shutdown_timeout,
        access_log=None,  # the app logs one line per request itself
        keepalive_timeout=KEEPALIVE_TIMEOUT,
        # After a 408 or an answer sent before the body was read, the rest of the body is read and
        # dropped for this long, so the client sees the answer rather than a reset; then the socket closes.
        lingering_time=settings.body_timeout,
        header_timeout=settings.header_timeout,
        metrics=app[metrics_key],
    )


def run(
    app: web.Application, *, host: str, port: int, reuse_port: bool = False, ssl_context: ssl.SSLContext | None = None
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, as ``web.run_app`` does, on a ``GatewayRunner``; over TLS
    with ``ssl_context``."""
    loop = asyncio.new_event_loop()
    main = loop.create_task(_serve(app, host, port, reuse_port, ssl_context))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (GracefulExit, KeyboardInterrupt):  # raised by the signal handlers
        pass
    finally:
        try:
            if not main.done():  # its cleanup: the listener closes, requests in flight finish, the app stops
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            _cancel_remaining(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


async def _serve(
    app: web.Application, host: str, port: int, reuse_port: bool, ssl_context: ssl.SSLContext | None
) -> None:
    runner = runner_for(app, handle_signals=True)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port, ssl_context=ssl_context).start()
        await asyncio.Event().wait()  # until a signal handler raises GracefulExit
    finally:
        await runner.cleanup()


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {"message": "unhandled exception during shutdown", "exception": task.exception(), "task": task}
            )
