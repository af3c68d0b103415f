"""``medsettle serve``: the gateway on its database, as one process or a parent supervising N workers."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec
from aiohttp import web

from adapters.demo import demo_key_file
from adapters.insurer.simulator import start_simulator
from adapters.policy_files import load_policy_book
from gateway.cli.database import database_url, nothing, with_connection
from gateway.cli.demo import demo_keys_path, seed
from gateway.cli.insurer_sim import paying
from gateway.config import Settings, tls_context
from gateway.http.app import create_app
from gateway.http.server import run
from gateway.http.shutdown import drain_on_sigterm
from gateway.http.workers import serve_as_worker, supervise
from gateway.logs import log
from settlement.errors import PolicyError
from settlement.policy_book import PolicyBook

REPOSITORY = Path(__file__).resolve().parents[2]
# ``serve --insurer-sim``: the beside-the-insurer example on a data folder of its own. A database holds one
# policy version per effective date, and this one and the default demo's both take effect on 1 January.
INSURER_DEMO_POLICY_DIR = REPOSITORY / "policies" / "examples" / "beside-the-insurer"
INSURER_DEMO_DATA_DIR = ".data-insurer"


def serve_defaults(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """Settings ``serve --insurer-sim`` changes where the environment leaves them unset (MEDSETTLE_DATA_DIR,
    MEDSETTLE_POLICY_DIR still win). Applied when the settings are loaded, before the development secrets
    are read from the data folder, so the pepper is the one kept beside this database."""
    if getattr(args, "command", None) != "serve" or not getattr(args, "insurer_sim", False):
        return {}
    defaults = {}
    if not environ.get("MEDSETTLE_DATA_DIR"):
        defaults["data_dir"] = INSURER_DEMO_DATA_DIR
    if not environ.get("MEDSETTLE_POLICY_DIR"):
        defaults["policy_dir"] = str(INSURER_DEMO_POLICY_DIR)
    return defaults


@dataclass(frozen=True, slots=True)
class InsurerDemo:
    """The insurer simulator run inside ``medsettle serve``: its policy book and the ports it takes."""

    book: PolicyBook
    port: int
    control_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """A cleanup context put first, so the simulator listens before the gateway and stops after it."""
        # It answers as the policy expects its platform to: the latest version naming an insurer says how.
        links = [chain.insurer for chain in self.book if chain.insurer is not None]
        answer_id = links[-1].answer_id if links else "platform"
        server = await start_simulator(self.book, port=self.port, control_port=self.control_port, answer_id=answer_id)
        log.info("insurer_simulator_started", url=server.url, control_url=server.control_url)
        try:
            yield
        finally:
            await server.close()


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 now (each socket held until all are bound)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def insurer_demo(settings: Settings, port: int | None) -> InsurerDemo:
    """The simulator for ``serve --insurer-sim``, paying under the gateway's own policy folder, on 127.0.0.1
    at ``port`` (its control routes at ``port`` + 1) or at free ports. Raises ``PolicyError`` or
    ``ValueError`` for a person to read."""
    if settings.workers > 1:
        # Each worker would hold a simulator of its own, each with its own memory of what it settled.
        raise ValueError("--insurer-sim runs in one process: leave --workers and MEDSETTLE_WORKERS at 1")
    book = load_policy_book(Path(settings.policy_dir) if settings.policy_dir else None)
    if not any(chain.insurer for chain in book):
        raise ValueError("no policy version in the policy folder names an [insurer]: the gateway would never call it")
    if port is not None and not 0 < port < 65535:
        raise ValueError("--insurer-sim-port must be from 1 to 65534 (its control routes take the next port)")
    port, control_port = (port, port + 1) if port else _free_ports(2)
    return InsurerDemo(book, port, control_port)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    try:
        import uvloop  # optional: no uvloop on Windows (a pyproject marker); only serving needs it

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is optional
        pass
    demo_insurer = None
    if getattr(args, "insurer_sim", False):
        try:
            demo_insurer = insurer_demo(settings, args.insurer_sim_port)
        except (PolicyError, ValueError) as error:
            print(f"medsettle serve --insurer-sim: {error}", file=sys.stderr)
            return 2
        settings = msgspec.structs.replace(settings, insurer_url=demo_insurer.url)  # as MEDSETTLE_INSURER_URL does
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
    if demo_insurer is not None:
        app.cleanup_ctx.insert(0, demo_insurer.context)
    drain_on_sigterm(app)  # SIGTERM fails readiness first and closes the listener after the drain
    if args.worker_of is not None:
        serve_as_worker(app, args.worker_of)
    else:
        _print_banner(settings, demo_insurer)
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


def _print_banner(settings: Settings, insurer: InsurerDemo | None = None) -> None:
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
    if insurer is not None:
        control = f"http://127.0.0.1:{insurer.control_port}"
        print(
            f"""insurer simulator in this process on {insurer.url} (MEDSETTLE_INSURER_URL), control {control}
  pays {paying(insurer.book)}; the rest of the chain is settled here on what it leaves.
  Its settlements: curl -s {control}/sim/state   a fault: curl -s {control}/sim/faults -d '{{"delay_ms": 2000}}'
""",
            flush=True,
        )
