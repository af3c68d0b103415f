"""What a route is: method, path, handler, and the roles that may call it.

The table itself is ``gateway/http/routes.py``. The middleware finds a request's roles, write
flag and body limit in its entry, through ``routes_key`` on the app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPEN: frozenset[str] = frozenset()  # no signature needed: health, readiness, metrics, and the dashboard's own pages
TERMINAL = frozenset({"terminal"})
READERS = frozenset({"terminal", "finance"})
ANY_ROLE = frozenset({"terminal", "finance", "admin"})
ADMIN = frozenset({"admin"})
REPORTING = frozenset({"admin", "finance"})


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    roles: frozenset[str]  # OPEN: no signature
    write: bool = False  # changes something: its nonce is claimed for every gateway process, not this one only
    claims_own_nonce: bool = False  # a write whose handler claims the nonce itself (a settlement, in its first read)
    max_body: int | None = None  # a bulk list larger than the gateway's default limit


class RouteTable:
    """The routes an app serves, each found by its handler."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._by_handler: dict[object, Route] = {}
        for route in self.routes:
            if route.handler in self._by_handler:
                raise ValueError(f"{route.handler.__name__} serves two routes: give each route its own handler")
            self._by_handler[route.handler] = route

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def route_of(self, handler: object) -> Route | None:
        return self._by_handler.get(handler)


routes_key = web.AppKey("routes", RouteTable)
