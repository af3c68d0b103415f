"""The typed keys of the aiohttp application, shared by everything that runs inside it.

The composition root (``gateway/http/app.py``) puts these objects on the app; the HTTP
handlers and middleware, the dashboard pages, the card-reader listener, the SIGTERM drain
and the worker wiring read them from ``request.app`` or ``app``. Keeping the keys here, not
in the module that builds the app, is what lets all of those modules be imported by the
app factory without importing it back.
"""

from __future__ import annotations

from aiohttp import web

from adapters.finance import Confirmations
from adapters.reports import Reports
from gateway.auth import Authenticator, RateLimiter
from gateway.config import Settings
from gateway.metrics import Metrics
from gateway.service import Service

settings_key = web.AppKey("settings", Settings)
service_key = web.AppKey("service", Service)
reports_key = web.AppKey("reports", Reports)  # every read-only report (adapters/reports.py)
confirmations_key = web.AppKey("confirmations", Confirmations)  # a clean reconciliation's audit row
metrics_key = web.AppKey("metrics", Metrics)
state_key = web.AppKey("state", dict)  # shutting_down, draining, the encoded OpenAPI document
authenticator_key = web.AppKey("authenticator", Authenticator)
limiter_key = web.AppKey("rate_limiter", RateLimiter)
