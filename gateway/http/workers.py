"""``medsettle serve --workers N``: N gateway processes on one port, under a supervising parent.

The parent does what one process does before serving (the embedded database, ``--demo``),
then starts N workers and serves nothing itself. Each worker is a fresh interpreter,
``python -m gateway.cli serve --worker-of PARENT``, not a fork: uvloop loops and asyncpg
connections must not be shared across a fork, and a re-exec has nothing to share. Every
worker binds the same host:port (and card-reader port) with SO_REUSEPORT, so the kernel
spreads new connections between them.

The parent forwards each SIGTERM and SIGINT it receives to every worker, so each stops as
one process does (SIGTERM drains first, see gateway/http/shutdown.py), waits up to the drain
plus ``MEDSETTLE_SHUTDOWN_TIMEOUT`` plus a margin, kills what is left, and exits 0 only
when every worker exited 0. Workers run in their own session, so Ctrl-C at a terminal
reaches only the parent, which passes it on once.

A worker that dies while nobody asked it to stop is logged and restarted, at most
``RESTART_BUDGET`` times in any ``RESTART_WINDOW`` seconds over all workers. Past that
something is wrong that restarting will not fix (the database refuses connections, the
port is taken): the parent stops the others and exits 1 for the orchestrator to see.
A worker whose parent disappears (``kill -9``) stops itself within a second.

Metrics: the parent points ``PROMETHEUS_MULTIPROC_DIR`` at an emptied folder under the
data folder before any worker starts, and marks a worker's live gauges dead when it
exits; see gateway/metrics.py.

Per-process state, the known limits of N workers on one port:

- The nonce cache is per worker. A replayed signed request that lands on another worker
  within the 300 s window is not refused as ``nonce_reused``. Money stays safe: a settle
  or reversal is idempotent per terminal and request id in the database, so the replay
  gets the first answer and writes nothing.
- The rate limiter is per worker. A terminal's keep-alive connection stays on one worker
  and sees the configured rate; a terminal that opens many connections can reach up to
  N times it. The rate is not divided by N, which would cut the ordinary one-connection
  terminal to rate/N.
- The database pool is per worker: N x ``MEDSETTLE_POOL_MAX`` connections in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from aiohttp import web
from prometheus_client import multiprocess

from gateway.app_keys import metrics_key
from gateway.config import Settings
from gateway.logs import log

RESTART_BUDGET = 5  # restarts allowed in any RESTART_WINDOW seconds, all workers together
RESTART_WINDOW = 60.0
STOP_MARGIN = 10.0  # seconds past the drain and MEDSETTLE_SHUTDOWN_TIMEOUT before a worker left running is killed
POLL_SECONDS = 0.2  # how often the parent looks for exited workers
PARENT_CHECK_SECONDS = 1.0  # how often a worker checks its parent is still there
POOL_SAMPLE_SECONDS = 1.0  # how often a worker records its pool gauges
MULTIPROC_FOLDER = "prometheus-multiproc"
WORKER_PID_HEADER = "X-Worker-Pid"


class PortInUse(Exception):
    pass


def metrics_folder(settings: Settings) -> Path:
    return Path(settings.data_dir).resolve() / MULTIPROC_FOLDER


def fresh_metrics_folder(folder: Path) -> Path:
    """Create the folder, or empty it of a previous run's value files (only those: ``*.db``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    return folder


def check_ports_free(host: str, ports: Sequence[int]) -> None:
    """Refuse to start when something already listens on a port.

    SO_REUSEPORT would otherwise let this gateway join a forgotten one (same user) on the
    same port and silently split its traffic. SO_REUSEADDR without SO_REUSEPORT binds past
    TIME_WAIT connections but not past a listening socket.
    """
    for port in ports:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise PortInUse(f"{host}:{port} is already in use; is another gateway running?") from None
                raise


@dataclass(slots=True)
class _Worker:
    slot: int
    process: subprocess.Popen[bytes]


class Supervisor:
    """Starts, watches, restarts and stops the worker processes. Runs in the parent's main thread."""

    def __init__(
        self,
        settings: Settings,
        database_url: str,
        *,
        metrics_dir: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.database_url = database_url
        self.metrics_dir = metrics_dir
        self.clock = clock
        self.workers: dict[int, _Worker] = {}
        self._restarts: deque[float] = deque()
        self._signals: deque[int] = deque()  # received, not yet forwarded

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--worker-of",
            str(os.getpid()),
            "--host",
            self.settings.host,
            "--port",
            str(self.settings.port),
        ]

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,  # the embedded server's too: the parent keeps it running
            "MEDSETTLE_WORKERS": str(self.settings.workers),
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
        }

    def start(self, slot: int) -> None:
        process = subprocess.Popen(self.command(), env=self.environment(), start_new_session=True)
        self.workers[slot] = _Worker(slot, process)
        log.info("worker_started", slot=slot, pid=process.pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.append(signum)  # forwarded by the main loop, never from inside the handler

    def _forward_signals(self) -> None:
        while self._signals:
            signum = self._signals.popleft()
            for worker in self.workers.values():
                if worker.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.send_signal(signum)

    def _may_restart(self) -> bool:
        now = self.clock()
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW:
            self._restarts.popleft()
        if len(self._restarts) >= RESTART_BUDGET:
            return False
        self._restarts.append(now)
        return True

    def _reaped(self, worker: _Worker) -> None:
        multiprocess.mark_process_dead(worker.process.pid, str(self.metrics_dir))

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT (0 when every worker then exits 0), or until restarts run out (1)."""
        previous = {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
        failed = False
        try:
            for slot in range(self.settings.workers):
                self.start(slot)
            while not self._signals and not failed:
                time.sleep(POLL_SECONDS)
                for worker in list(self.workers.values()):
                    code = worker.process.poll()
                    if code is None or self._signals:
                        continue
                    self._reaped(worker)
                    log.error("worker_died", slot=worker.slot, pid=worker.process.pid, **_how_it_ended(code))
                    if not self._may_restart():
                        log.error(
                            "worker_restarts_exhausted",
                            restarts=RESTART_BUDGET,
                            window_seconds=RESTART_WINDOW,
                            action="stopping every worker",
                        )
                        failed = True
                        break
                    self.start(worker.slot)
            if self._signals:
                log.info("workers_stopping", signal=signal.Signals(self._signals[0]).name)
            else:
                self._signals.append(signal.SIGTERM)
            return 0 if self.stop() and not failed else 1
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def stop(self) -> bool:
        """Forward the stop signal, wait for every worker, kill any left at the deadline. True if all exited 0.

        Each signal the parent receives reaches every worker as it is, so they behave as one process
        does: SIGTERM drains (gateway/http/shutdown.py), a second SIGTERM or a SIGINT stops at once.
        """
        deadline = self.clock() + self.settings.shutdown_drain_seconds + self.settings.shutdown_timeout + STOP_MARGIN
        while True:
            self._forward_signals()
            running = [worker for worker in self.workers.values() if worker.process.poll() is None]
            if not running or self.clock() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        for worker in running:
            log.error("worker_killed", slot=worker.slot, pid=worker.process.pid, reason="did not stop in time")
            worker.process.kill()
            worker.process.wait(timeout=10)
        clean = True
        for worker in self.workers.values():
            self._reaped(worker)
            code = worker.process.returncode
            if code != 0:
                log.error("worker_exit", slot=worker.slot, pid=worker.process.pid, **_how_it_ended(code))
                clean = False
        return clean


def _how_it_ended(returncode: int) -> dict[str, object]:
    if returncode < 0:  # subprocess's way of saying "killed by this signal"
        try:
            return {"signal": signal.Signals(-returncode).name}
        except ValueError:
            return {"signal": -returncode}
    return {"exit_code": returncode}


def supervise(settings: Settings, database_url: str, *, announce: Callable[[], None] = lambda: None) -> int:
    """Run ``settings.workers`` workers until stopped; the exit status of ``medsettle serve``."""
    try:
        check_ports_free(settings.host, [port for port in (settings.port, settings.reader_port) if port])
    except PortInUse as error:
        print(f"medsettle serve: {error}", file=sys.stderr)
        return 2
    announce()
    metrics_dir = fresh_metrics_folder(metrics_folder(settings))
    log.info("workers_starting", workers=settings.workers, host=settings.host, port=settings.port)
    return Supervisor(settings, database_url, metrics_dir=metrics_dir).run()


# ---------------------------------------------------------------- inside a worker


def serve_as_worker(app: web.Application, parent_pid: int) -> None:
    """Wire a worker's app: stop when the parent is gone, sample pool gauges, name the worker in replies."""
    sample_pool = app[metrics_key].sample_pool

    async def add_worker_header(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers[WORKER_PID_HEADER] = str(os.getpid())

    async def worker_context(_app: web.Application) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(_stop_when_orphaned(parent_pid)),
            asyncio.create_task(_sample_pool_forever(sample_pool)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app.on_response_prepare.append(add_worker_header)
    app.cleanup_ctx.append(worker_context)


async def _stop_when_orphaned(parent_pid: int) -> None:
    """A parent killed with SIGKILL cannot forward anything: its workers notice and drain themselves."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_CHECK_SECONDS)
    log.error("worker_orphaned", parent=parent_pid, action="stopping")
    os.kill(os.getpid(), signal.SIGTERM)


async def _sample_pool_forever(sample_pool: Callable[[], None]) -> None:
    while True:
        sample_pool()
        await asyncio.sleep(POOL_SAMPLE_SECONDS)
