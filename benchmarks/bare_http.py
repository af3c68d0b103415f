"""The HTTP ceiling: a bare aiohttp handler answering a small JSON body, nothing else.

    python benchmarks/bare_http.py --port 8090

It runs the way ``medsettle serve`` runs (one process, uvloop when installed, no access
log), so the requests per second ``wrk`` gets from it are the most the gateway's HTTP
layer could ever serve on this machine: no signature check, no decoding, no database.
``benchmarks/ceilings.py`` starts it, hammers it and stops it (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

BODY = b'{"status":"ok","service":"medsettle","version":1}'


async def ok(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", ok)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    loop_name = "asyncio"
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        loop_name = "uvloop"
    except ImportError:  # pragma: no cover - uvloop is optional, as in the gateway
        pass
    print(f"bare aiohttp on http://{args.host}:{args.port}/ ({loop_name})", flush=True)
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None, handle_signals=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
