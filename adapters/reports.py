"""Reports: the one door through which the gateway and the command line read what was settled.

Every read-only report query is reached through ``Reports``: daily statements and
reconciliation (``adapters.finance``), totals over a range (``adapters.range_reconciliation``), the
gateway's side of a reconciliation with the insurer (``adapters.insurer_reconciliation``),
monthly statements (``adapters.monthly_statement``), settlement search (``adapters.settlement_search``),
a person's year (``adapters.person_statement``),
finance statistics (``adapters.finance_stats``), registry statistics (``adapters.registry_stats``)
and the finance dashboard's figures (``adapters.dashboard_figures``). Each answers a frozen Struct of
``adapters.report_models``, never a free-form dict. (A receipt prints one stored
settlement, which the store reads from the primary with its billed items.)

Reports read from the reports pool (a replica when ``REPORTS_DATABASE_URL`` is set,
else the primary). Nothing here writes; confirming a clean reconciliation is ``adapters.finance.Confirmations``.

The HTTP layer is given one ``Reports`` by the composition root (``gateway/http/app.py``),
built from the same pools as the ``Store``; the command line builds one over its single
connection with ``Reports.over_connection``. Both hand it the policy book's funds
(``adapters.fund_names.FundDirectory``), so every report lists every fund of any chain by its
name; without them a fund is named by its code.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import asyncpg

from adapters import (
    adjustment_orders,
    dashboard_figures,
    finance,
    finance_stats,
    insurer_reconciliation,
    person_statement,
    range_reconciliation,
    registry_stats,
    settlement_search,
)
from adapters import monthly_statement as monthly_module
from adapters import what_if as what_if_module
from adapters.dashboard_figures import Behind
from adapters.finance import ReconciliationError, ReconciliationRequest
from adapters.fund_names import FundDirectory
from adapters.range_reconciliation import TotalsReconciliationRequest
from adapters.report_models import (
    ClinicReconciliation,
    DailyStatement,
    DashboardFigures,
    DashboardSettlements,
    FinanceStatsReport,
    MonthlyStatement,
    PersonYearStatement,
    Reconciliation,
    RegistryStats,
    SettlementPage,
    TotalsReconciliation,
)
from adapters.settlement_search import Search
from adapters.what_if import GroupBy, WhatIfReport
from settlement.catalogue import Catalogue
from settlement.chain import Chain
from settlement.eligibility import FundStanding

__all__ = ["Connections", "ReconciliationError", "ReconciliationRequest", "Reports"]


class Connections(Protocol):
    """Where connections come from: an ``asyncpg.Pool``, or one connection (``Reports.over_connection``)."""

    def acquire(self, *, timeout: float | None = None) -> AbstractAsyncContextManager[asyncpg.Connection]: ...


class _OneConnection:
    """A single open connection lent out as a pool lends one; the caller keeps it open and closes it."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    @asynccontextmanager
    async def acquire(self, *, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        yield self._connection


class WindowTooLarge(Exception):
    """A what-if asked over HTTP would replay more settlements than a request may."""

    def __init__(self, replays: int, at_most: int) -> None:
        super().__init__(
            f"this window replays {replays} settlements (from 1 January of its first year); over HTTP at most "
            f"{at_most}: use `medsettle policy what-if` for larger windows"
        )
        self.replays = replays


class Reports:
    """Read-only reports, each an async method answering a typed report."""

    def __init__(
        self,
        pool: Connections,
        *,
        reports_pool: Connections | None = None,
        acquire_timeout: float = 5.0,
        funds: FundDirectory | None = None,
    ) -> None:
        # Reports may read from a replica (REPORTS_DATABASE_URL), as adapters.store.Store does.
        self._reports = reports_pool or pool
        # Waiting for a connection is bounded, so pool exhaustion answers 503 instead of hanging.
        self._acquire_timeout = acquire_timeout
        self.funds = funds or FundDirectory()

    @classmethod
    def over_connection(cls, connection: asyncpg.Connection, *, funds: FundDirectory | None = None) -> Reports:
        """Reports read over one open connection, for the command line."""
        return cls(_OneConnection(connection), funds=funds)

    def _reporting(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return self._reports.acquire(timeout=self._acquire_timeout)

    # ------------------------------------------------------------ finance

    async def adjustment_orders(
        self, *, start: dt.date, end: dt.date, status: adjustment_orders.OrderStatus | None
    ) -> adjustment_orders.AdjustmentOrders:
        """The orders re-adjudication booked in a period, of one status or all (adapters/adjustment_orders.py)."""
        async with self._reporting() as connection:
            return await adjustment_orders.list_orders(
                connection, start=start, end=end, status=status, funds=self.funds
            )

    async def daily_statement(self, day: dt.date, *, today: dt.date) -> DailyStatement:
        """One booking day per clinic and fund, by level and region, with the day's reversals."""
        async with self._reporting() as connection:
            return await finance.daily_statement(connection, day, today=today, funds=self.funds)

    async def monthly_statement(self, month: dt.date, *, today: dt.date) -> MonthlyStatement:
        """One booking month (the month of ``month``) per fund and clinic."""
        async with self._reporting() as connection:
            return await monthly_module.monthly_statement(connection, month, today=today, funds=self.funds)

    async def reconcile(self, request: ReconciliationRequest) -> Reconciliation:
        """A submitted list against the gateway's for its day; ``ReconciliationError`` for a list that cannot be
        compared (an unknown fund, a settlement listed twice). Confirming a clean one is not a read:
        ``adapters.finance.Confirmations``."""
        async with self._reporting() as connection:
            return await finance.reconcile(connection, request, funds=self.funds)

    async def reconcile_totals(self, request: TotalsReconciliationRequest) -> TotalsReconciliation:
        """Submitted totals over a range of booking days against the gateway's (adapters/range_reconciliation.py);
        ``ReconciliationError`` for a range that cannot be reconciled (too wide, or ending before it starts)."""
        async with self._reporting() as connection:
            return await range_reconciliation.reconcile_totals(connection, request, funds=self.funds)

    async def insurer_ledger(
        self, institution_code: str, first: dt.date, last: dt.date, also: Sequence[str]
    ) -> list[insurer_reconciliation.LedgerMessage]:
        """The gateway's side of a reconciliation with the insurer: its settle messages sent from ``first`` to
        ``last`` (China dates) and those with the ids ``also``, each with its settlement and its cancels
        (adapters/insurer_reconciliation.py)."""
        async with self._reporting() as connection:
            return await insurer_reconciliation.read_ledger(connection, institution_code, first, last, also)

    async def search_settlements(self, search: Search) -> SettlementPage:
        """One page of the settlements a search finds (adapters/settlement_search.py); ``SearchError`` for a
        search that cannot be run (a range too wide or backwards, a page size out of bounds)."""
        async with self._reporting() as connection:
            return await settlement_search.search_settlements(connection, search)

    async def settlements_with_prefix(self, low: uuid.UUID, high: uuid.UUID) -> list[uuid.UUID]:
        """At most two settlement ids in ``[low, high]``: those a receipt number's digits begin."""
        async with self._reporting() as connection:
            return await settlement_search.settlements_with_prefix(connection, low, high)

    async def person_year(
        self,
        person_key: bytes,
        year: int,
        *,
        person: str,
        name: str,
        as_of: dt.date,
        caps: Sequence[FundStanding],
    ) -> PersonYearStatement:
        """A person's service year: every settlement, what each fund paid, the caps left as of ``as_of``
        (adapters/person_statement.py)."""
        async with self._reporting() as connection:
            return await person_statement.person_year(
                connection, person_key, year, person=person, name=name, as_of=as_of, caps=caps, funds=self.funds
            )

    async def finance_stats(self, *, by: str, period_from: dt.date, period_to: dt.date) -> FinanceStatsReport:
        """Amounts per payer, out-of-pocket share and caps reached by one dimension (``finance_stats.DIMENSIONS``;
        another is a ValueError)."""
        async with self._reporting() as connection:
            return await finance_stats.finance_stats(
                connection, by=by, period_from=period_from, period_to=period_to, funds=self.funds
            )

    async def what_if(
        self, candidate: Chain, *, start: dt.date, end: dt.date, by: GroupBy, catalogue: Catalogue, at_most: int
    ) -> WhatIfReport:
        """``candidate`` replayed over ``[start, end]`` (adapters/what_if.py); ``WindowTooLarge`` when that
        would replay more than ``at_most`` settlements."""
        funds = FundDirectory([*self.funds.policies, candidate])
        async with self._reporting() as connection:
            replays = await what_if_module.window_size(connection, start, end)
            if replays > at_most:
                raise WindowTooLarge(replays, at_most)
            return await what_if_module.what_if(
                connection, candidate, start=start, end=end, by=by, catalogue=catalogue, funds=funds
            )

    # ------------------------------------------------------------ registry

    async def registry_stats(self, *, on: dt.date, period_from: dt.date, period_to: dt.date) -> RegistryStats:
        """People in force on ``on``, added and struck off in the period, and people served by clinic level."""
        async with self._reporting() as connection:
            return await registry_stats.read_registry_stats(
                connection, on=on, period_from=period_from, period_to=period_to
            )

    # ------------------------------------------------------------ dashboard

    async def dashboard_figures(
        self, period_from: dt.date, period_to: dt.date, *, reconciliation_day: dt.date | None = None
    ) -> DashboardFigures:
        """The dashboard's figures for a period of service dates, and the reconciliation status of a booking day
        (the period's last day by default)."""
        async with self._reporting() as connection:
            return await dashboard_figures.figures(
                connection, period_from, period_to, reconciliation_day=reconciliation_day, funds=self.funds
            )

    async def dashboard_settlements(self, behind: Behind) -> DashboardSettlements:
        """The settlements behind a dashboard figure, a page at a time, and the totals of them all
        (``adapters.dashboard_figures.settlements_behind``)."""
        async with self._reporting() as connection:
            return await dashboard_figures.settlements_behind(connection, behind, funds=self.funds)

    async def reconciliation_status(self, day: dt.date) -> list[ClinicReconciliation]:
        """Every clinic with business booked on ``day``, and whether a clean reconciliation of it was confirmed."""
        async with self._reporting() as connection:
            return await dashboard_figures.reconciliation_status(connection, day)
