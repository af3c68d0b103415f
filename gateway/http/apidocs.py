"""``GET /docs``: the OpenAPI document as one self-contained HTML page, for a person at a browser.

Made on the server from the same document ``/openapi.json`` serves, so the two never disagree: no
CDN, no script, every value escaped. Operations are grouped by their path's first segment.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from aiohttp import web

from gateway.app_keys import state_key
from gateway.http.openapi import openapi_document
from gateway.http.routing import routes_key

_METHODS = ("get", "post", "put", "patch", "delete")
_STYLE = (
    "body{font-family:sans-serif;max-width:70em;margin:auto;padding:1em}"
    "section.op{border:1px solid #ccc;border-radius:4px;margin:.8em 0;padding:.5em 1em}"
    "code.method{font-weight:bold}pre{background:#f4f4f4;padding:.5em;overflow-x:auto}"
    "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left}"
)


def render_docs(document: dict[str, Any]) -> str:
    """The page for ``document``: the signing scheme first, then each operation under its path's first segment."""
    info = document["info"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(info['title'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(info['title'])}</h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        '<p>The machine-readable document: <a href="/openapi.json">/openapi.json</a> (OpenAPI '
        f"{escape(document['openapi'])}).</p>",
        _security(document),
    ]
    for group, operations in _groups(document).items():
        parts.append(f"<h2>/{escape(group)}</h2>")
        parts += [_operation(method, path, operation) for method, path, operation in operations]
    parts.append("</body></html>")
    return "\n".join(parts)


def _security(document: dict[str, Any]) -> str:
    schemes = document.get("components", {}).get("securitySchemes", {})
    rows = "".join(
        f"<tr><td><code>{escape(scheme.get('name', name))}</code></td>"
        f"<td>{escape(scheme.get('description', ''))}</td></tr>"
        for name, scheme in schemes.items()
    )
    return (
        "<h2>Signing</h2><p>Every operation not marked <em>open</em> needs all of these headers:</p>"
        f"<table><tr><th>Header</th><th>Value</th></tr>{rows}</table>"
    )


def _groups(document: dict[str, Any]) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    """Operations by the first segment of their path (``/v1/...`` by the one after the version)."""
    groups: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in document["paths"].items():
        segments = [segment for segment in path.split("/") if segment]
        group = "/".join(segments[:2] if segments[:1] == ["v1"] else segments[:1])
        for method in _METHODS:
            if method in item:
                groups.setdefault(group, []).append((method, path, item[method]))
    return groups


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    open_ = operation.get("security") == []
    parts = [
        f'<section class="op" id="{escape(operation["operationId"])}">',
        f'<h3><code class="method">{escape(method.upper())}</code> <code>{escape(path)}</code></h3>',
        f"<p>{escape(operation.get('summary', ''))}</p>",
        f"<p>operationId <code>{escape(operation['operationId'])}</code>"
        + (" · <em>open</em>: no signature" if open_ else " · signed")
        + "</p>",
    ]
    if roles := operation.get("x-roles"):
        parts.append(f"<p>Roles: {escape(', '.join(roles))}</p>")
    if parameters := operation.get("parameters"):
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td>{'yes' if p.get('required') else 'no'}</td>"
            f"<td><code>{escape(json.dumps(p.get('schema', {}), ensure_ascii=False))}</code></td>"
            f"<td>{escape(p.get('description', ''))}</td></tr>"
            for p in parameters
        )
        parts.append(
            "<table><tr><th>Parameter</th><th>In</th><th>Required</th><th>Schema</th><th>Meaning</th></tr>"
            f"{rows}</table>"
        )
    if body := operation.get("requestBody"):
        for media, content in body["content"].items():
            if "example" in content:
                example = json.dumps(content["example"], indent=2, ensure_ascii=False)
                parts.append(f"<p>Request body ({escape(media)}), for example:</p><pre>{escape(example)}</pre>")
                break
    responses = ", ".join(
        f"<code>{escape(status)}</code> {escape(response.get('description', ''))}"
        for status, response in operation["responses"].items()
    )
    parts.append(f"<p>Answers: {responses}</p></section>")
    return "\n".join(parts)


async def docs_page(request: web.Request) -> web.Response:
    """``GET /docs``: the page for the routes this app serves, rendered once."""
    state = request.app[state_key]
    if "docs_page" not in state:
        state["docs_page"] = render_docs(openapi_document(request.app[routes_key])).encode()
    return web.Response(body=state["docs_page"], content_type="text/html", charset="utf-8")
