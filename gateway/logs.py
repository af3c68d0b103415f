"""Structured logs: JSON for machines, console for a person; no raw national ID, ever.

Two sources reach stderr: the gateway's own structlog events, and records that libraries
(aiohttp, asyncio, asyncpg, ``warnings``) send through the standard ``logging`` module. Both
are rendered by the same renderer, one object per line, a traceback as the ``exception``
field, and every value passed through ``scrub`` first.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import MutableMapping
from typing import Any

import structlog

from adapters.identity import redact

_SMALLEST_UNSAFE_NUMBER = 10**16  # 17 digits: a number this long could be an ID read as an integer


def scrub(value: Any) -> Any:
    """``value`` with every national ID masked, however deep it sits.

    Strings, dict keys, items of lists, tuples and sets, integers of 17 digits or more, and any
    other object as the renderer would show it (its ``repr``), e.g. an exception passed as a value.
    """
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if abs(value) < _SMALLEST_UNSAFE_NUMBER else redact(str(value))
    if isinstance(value, dict):
        return {scrub(key): scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(item) for item in value]
    shown = repr(value)
    masked = redact(shown)
    return value if masked == shown else masked


def _redact_ids(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """Last line of defence: mask anything shaped like a national ID in any value."""
    return {key: scrub(value) for key, value in event.items()}


def configure_logging(log_format: str = "json", level: str = "info") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    threshold = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_ids,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Records from the stdlib ``logging`` module (aiohttp's "Error handling request", asyncio's
    # "Task exception was never retrieved", warnings) take the same way out, instead of Python's
    # last-resort handler printing a bare message and a multi-line traceback between JSON lines.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,  # the request id, when logged during a request
                structlog.processors.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _redact_ids,
                renderer,
            ],
        )
    )
    logging.basicConfig(handlers=[handler], level=threshold, force=True)
    logging.captureWarnings(True)


log = structlog.get_logger("medsettle")


def fresh_request_id() -> str:
    """A new request id (32 hex digits) that ID masking leaves as it is.

    About one uuid4 in 200 has a run of 17 decimal digits among its hex digits; masked in the
    log, and in the answer's ``X-Request-Id``, it would no longer match the terminal's copy.
    """
    for _ in range(100):
        candidate = uuid.uuid4().hex
        if redact(candidate) == candidate:
            return candidate
    return "0123456789abcdef" * 2  # unreachable in practice: 100 unlucky draws in a row
