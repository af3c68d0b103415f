"""``medsettle serve``: the gateway on its database, as one process or a parent supervising N workers."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from pathlib import Path

from adapters.demo import demo_key_file
from gateway.cli.database import database_url, nothing, with_connection
from gateway.cli.demo import demo_keys_path, seed
from gateway.config import Settings, tls_context
from gateway.http.app import create_app
from gateway.http.server import run
from gateway.http.shutdown import drain_on_sigterm
from gateway.http.workers import serve_as_worker, supervise
from gateway.logs import log


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    try:
        import uvloop  # optional: no uvloop on Windows (a pyproject marker); only serving needs it

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is optional
        pass
    url = database_url(settings)
    if args.worker_of is None:  # say so at once if the database is out of reach; workers start after this
        asyncio.run(with_connection(url, nothing))
    if args.demo:
        seeded = asyncio.run(with_connection(url, lambda c: seed(c, settings, only_if_empty=True)))
        if seeded:
            log.info("demo_seeded", **seeded)
        if settings.environment == "development":
            asyncio.run(
                with_connection(url, lambda c: demo_key_file(c, settings.terminal_key_key, demo_keys_path(settings)))
            )
    if settings.workers > 1 and args.worker_of is None:
        return supervise(  # the parent serves nothing; its workers do (gateway/http/workers.py)
            settings, url, announce=lambda: _print_banner(settings)
        )
    app = create_app(settings, dsn=url)
    drain_on_sigterm(app)  # SIGTERM fails readiness first and closes the listener after the drain
    if args.worker_of is not None:
        serve_as_worker(app, args.worker_of)
    else:
        _print_banner(settings)
    # web.run_app, on a runner with the header timeout and problem+json refusals (gateway/http/server.py)
    run(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=args.worker_of is not None,  # workers share the port; the kernel spreads connections
        ssl_context=tls_context(settings),
    )
    return 0


SAMPLE_BILL = Path(__file__).resolve().parents[2] / "samples" / "bill-worked-example.json"


def client_base_url(host: str, port: int, scheme: str = "http") -> str:
    """The URL a client on this machine uses to reach a gateway listening on ``host``:``port``."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # wildcards: connect locally
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _shown_path(path: Path) -> str:
    """``path`` as a person pastes it from where the gateway was started: relative below here, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def _print_banner(settings: Settings) -> None:
    scheme = "https" if settings.tls_cert_file else "http"
    base = client_base_url(settings.host, settings.port, scheme)
    # The example names the URL and the keys file, so it works pasted into a shell without this one's settings.
    script = Path(sys.executable).parent / "medsettle"
    program = _shown_path(script) if script.exists() else "medsettle"
    keys = _shown_path(demo_keys_path(settings))
    bill = _shown_path(SAMPLE_BILL) if SAMPLE_BILL.exists() else "samples/bill-worked-example.json"
    database = (
        "DATABASE_URL"
        if settings.database_url
        else f"embedded PostgreSQL in {_shown_path(Path(settings.data_dir) / 'pg')}"
    )
    print(
        f"""
medsettle gateway listening on {scheme}://{settings.host}:{settings.port}  ({database})
  OpenAPI: {base}/openapi.json   metrics: {base}/metrics   ready: {base}/readyz

Every request is signed with a terminal's key (README: "Signing requests"). The demo terminals'
keys are in {keys}. Settle worked example 2 of docs/worked-examples.md (county
inpatient, priority_care + minimum_allowance) from another shell:

  {shlex.quote(program)} client POST /v1/settlements --terminal term-C001 \\
      --url {shlex.quote(base)} --keys {shlex.quote(keys)} --data {shlex.quote("@" + bill)}
""",
        flush=True,
    )
