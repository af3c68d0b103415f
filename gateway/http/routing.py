"""What a route is: method, path, handler, the roles that may call it, and what /openapi.json says of it.

The table itself is ``gateway/http/routes.py``. Every entry carries its ``Doc``, so a route
cannot be served without being documented: ``gateway/http/openapi.py`` builds the document's
paths from the table, and the middleware finds a request's roles, write flag and body limit in
the same entries (through ``routes_key`` on the app).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.problems import ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPEN: frozenset[str] = frozenset()  # no signature needed: health, readiness, metrics, and the dashboard's own pages
TERMINAL = frozenset({"terminal"})
READERS = frozenset({"terminal", "finance"})
ANY_ROLE = frozenset({"terminal", "finance", "admin"})
ADMIN = frozenset({"admin"})
REPORTING = frozenset({"admin", "finance"})


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter the handler reads."""

    name: str
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer a route gives when it succeeds."""

    status: int = 200
    description: str = "OK"
    model: Any = None  # a msgspec Struct (or a union of them), as JSON or MessagePack by Accept
    name: str | None = None  # the union's component name; a Struct's is its class name
    csv: bool = False  # also text/csv, for format=csv or Accept: text/csv
    xlsx: bool = False  # also an xlsx workbook, for format=xlsx
    media: tuple[str, ...] = ()  # content types of an answer without a model: JSON objects, or text


@dataclass(frozen=True, slots=True)
class Doc:
    """What /openapi.json says of a route.

    A signed route may also answer 401, 403, 429 and 503, and a route with a body 400, 413, 415
    and 422; ``errors`` lists the problems beyond those.
    """

    summary: str
    replies: tuple[Reply, ...]
    body: type | None = None  # the request's model, as JSON or MessagePack
    form: tuple[Param, ...] = ()  # a browser page's form fields, form-encoded or multipart
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    roles: frozenset[str]  # OPEN: no signature
    doc: Doc
    write: bool = False  # changes something: its nonce is claimed for every gateway process, not this one only
    claims_own_nonce: bool = False  # a write whose handler claims the nonce itself (a settlement, in its first read)
    max_body: int | None = None  # a bulk list larger than the gateway's default limit
    # A page for a person in a browser: its refusals as a page when the browser asks for HTML (None: as
    # problem+json, which every other route and every API client gets).
    refusal_page: Callable[[web.Request, ApiError], web.Response | None] | None = None


def enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


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
