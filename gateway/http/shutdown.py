"""SIGTERM with a drain phase: readiness fails first, the listener closes later.

aiohttp's ``run_app`` closes the listening socket the moment SIGTERM arrives. A load
balancer that still routes here (Kubernetes keeps sending traffic until the endpoint
update has reached every node; nginx has no idea of readiness at all) then meets refused
connections. So ``medsettle serve`` handles SIGTERM itself:

1. ``/readyz`` answers 503 ``shutting_down`` at once, so the pod leaves the endpoints;
2. for ``MEDSETTLE_SHUTDOWN_DRAIN_SECONDS`` (default 5) the gateway keeps listening and
   keeps answering every request normally, settlements included ("lame duck"). Refusing
   them with 503 would turn each rollout into a burst of terminal retries for requests
   that could simply be served; accepting them is safe because ``MEDSETTLE_REQUEST_TIMEOUT``
   (10) is shorter than ``MEDSETTLE_SHUTDOWN_TIMEOUT`` (20), so whatever is taken during
   the drain finishes before the process stops;
3. then aiohttp's own graceful exit: the listener closes (new connections are refused),
   in-flight requests and card-reader frames get up to ``MEDSETTLE_SHUTDOWN_TIMEOUT`` to
   finish, idle connections are closed, the pool closes and the process exits 0.

A second SIGTERM, or SIGINT (Ctrl-C at a terminal), skips what is left of the drain.
The Kubernetes grace period must cover preStop + drain + shutdown timeout
(``tests/unit/test_deploy.py`` checks it).

Only ``medsettle serve`` installs this (``cmd_serve``): an app run inside a test process
must not take over that process's signals.
"""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web
from aiohttp.web_runner import GracefulExit

from gateway.app_keys import settings_key, state_key
from gateway.logs import log


def drain_on_sigterm(app: web.Application) -> None:
    """Make SIGTERM fail readiness first and stop serving ``shutdown_drain_seconds`` later."""
    app.on_startup.append(_install)


async def _install(app: web.Application) -> None:
    loop = asyncio.get_running_loop()
    drain = app[settings_key].shutdown_drain_seconds
    state = app[state_key]

    def stop() -> None:
        raise GracefulExit  # the same exit aiohttp's own SIGTERM handler takes, now after the drain

    def on_sigterm() -> None:
        if state.get("draining"):
            log.info("shutdown_drain_cut_short")
            loop.call_soon(stop)
            return
        state["draining"] = True
        state["shutting_down"] = True  # /readyz answers 503 from now on
        log.info("shutdown_draining", seconds=drain)
        loop.call_later(drain, stop)

    # Replaces the handler run_app installed before on_startup; its SIGINT handler stays (stop at once).
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
