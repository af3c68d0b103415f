"""The insurer's item catalogue (医保目录): what each national item code is, and from which date.

DESIGN Part 2, "The item catalogue". A catalogue version is in force from its effective date until the
next version's. It maps a national item code to its category (A/B/C), the B item's own self-pay-first
share (when it differs from the policy's) and a price cap per unit (限价). The gateway, not the terminal,
decides each line's category; ``classify`` splits a line into the four buckets of the national
settlement answer:

1. a code not in the catalogue on the service date: fully self-pay, with a notice on the line;
2. over-limit self-pay (超限价自付) = quantity × (unit price − cap) when the unit price is above the cap;
   the rest is the line's in-catalogue amount;
3. category C: the in-catalogue amount is fully self-pay (全自费); B: its self-pay-first share (先行自付),
   rounded half up per line; what is left is eligible (政策范围内).

``Catalogue`` holds every version in memory at once, compactly: most codes never change, so they hold
one ``CatalogueItem`` (shared with every other code of the same category, share and cap); a code that
changed holds its history. 200,000 items take about 25 MB (benchmarks/catalogue_bench.py).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

from settlement.errors import InvalidBill, SettlementError
from settlement.models import Category, LineItem, Model, Notice
from settlement.money import MAX_BILL_FEN, apply_rate

NOT_IN_CATALOGUE: Final = "not_in_catalogue"


class CategoryMismatch(SettlementError):
    """The terminal sent a category that the catalogue in force disagrees with."""

    code = "category_mismatch"


class UnitPriceRequired(SettlementError):
    """A line of a price-capped item came without its quantity and unit price, so the over-limit part
    cannot be worked out."""

    code = "unit_price_required"


class CatalogueItem(Model, frozen=True, kw_only=True):
    """What one catalogue version says about one item code. ``self_pay_share`` is parts per million
    (None: the policy's share for B items); ``price_cap`` is fen per unit (None: no cap)."""

    category: Category
    self_pay_share: int | None = None
    price_cap: int | None = None


# A code's history when it changed: (version index, what that version says; None: not in it), oldest first.
History = tuple[tuple[int, CatalogueItem | None], ...]


class CatalogueView:
    """The catalogue version in force on one service date."""

    __slots__ = ("_entries", "_index", "effective_from", "version")

    def __init__(self, entries: dict[str, CatalogueItem | History], index: int, effective_from: dt.date) -> None:
        self._entries = entries
        self._index = index
        self.effective_from = effective_from
        self.version = effective_from.isoformat()

    def get(self, code: str) -> CatalogueItem | None:
        entry = self._entries.get(code)
        if entry is None or isinstance(entry, CatalogueItem):
            return entry
        found = None
        for since, item in entry:
            if since > self._index:
                break
            found = item
        return found


class Catalogue:
    """Every catalogue version, picked by service date. Empty: no catalogue is loaded, and terminals'
    categories stand (Part 1's behaviour)."""

    __slots__ = ("_entries", "_views", "versions")

    def __init__(self, versions: Sequence[dt.date] = (), entries: dict[str, CatalogueItem | History] | None = None):
        self.versions: tuple[dt.date, ...] = tuple(versions)
        if list(self.versions) != sorted(set(self.versions)):
            raise ValueError("catalogue versions must be distinct dates in order")
        self._entries = entries or {}
        self._views = tuple(CatalogueView(self._entries, index, day) for index, day in enumerate(self.versions))

    @classmethod
    def build(
        cls, versions: Iterable[dt.date], changes: Iterable[tuple[str, dt.date, CatalogueItem | None]]
    ) -> Catalogue:
        """A catalogue from its versions' dates and the changes each made: (code, the version's date, what
        the code is from then on; None: removed). A code keeps what it was until a later change."""
        ordered = sorted(set(versions))
        index_of = {day: index for index, day in enumerate(ordered)}
        shared: dict[CatalogueItem, CatalogueItem] = {}
        by_code: dict[str, list[tuple[int, CatalogueItem | None]]] = {}
        for code, since, item in changes:
            if item is not None:
                item = shared.setdefault(item, item)
            by_code.setdefault(code, []).append((index_of[since], item))
        entries: dict[str, CatalogueItem | History] = {}
        for code, history in by_code.items():
            if len(history) == 1 and history[0][0] == 0 and history[0][1] is not None:
                entries[code] = history[0][1]
            else:
                history.sort(key=lambda change: change[0])
                entries[code] = tuple(history)
        return cls(ordered, entries)

    def __bool__(self) -> bool:
        return bool(self.versions)

    def __len__(self) -> int:
        """How many codes the latest version holds."""
        if not self.versions:
            return 0
        latest = self._views[-1]
        return sum(1 for code in self._entries if latest.get(code) is not None)

    def on(self, day: dt.date) -> CatalogueView | None:
        """The version in force on ``day``; None before the first version (terminals' categories stand)."""
        index = bisect.bisect_right(self.versions, day) - 1
        return self._views[index] if index >= 0 else None


class Classified(NamedTuple):
    """A bill's lines split into the four buckets, per line in bill order, with the categories they were
    settled under and the notices about lines the catalogue does not hold."""

    categories: list[Category]
    not_covered: list[int]
    over_limit: list[int]
    self_pay_first: list[int]
    eligible: list[int]
    notices: tuple[Notice, ...]
    total: int
    """The lines' amounts, summed."""


def classify(items: Sequence[LineItem], view: CatalogueView | None, b_share: int) -> Classified:
    """Split each line into 全自费, 超限价自付, 先行自付 and 政策范围内 (they add up to the line's amount).

    With ``view`` None (no catalogue in force on the service date) the terminal's category stands and
    a line without one is refused. ``b_share`` is the policy's self-pay-first share of a B item, in
    parts per million."""
    categories: list[Category] = []
    not_covered: list[int] = []
    over_limit: list[int] = []
    self_pay: list[int] = []
    eligible: list[int] = []
    if view is None:
        # On the settle path of every bill: one plain loop is the fastest form (benchmarks/engine_bench.py).
        for item in items:
            category = item.category
            amount = item.amount
            if category == "A":
                part = 0
                covered = amount
            elif category == "B":
                part = apply_rate(amount, b_share)
                covered = amount - part
            elif category == "C":
                part = covered = 0
            else:
                raise InvalidBill(
                    "category is required: no item catalogue is in force on the service date",
                    field=f"items[{[line.category for line in items].index(None)}].category",
                )
            categories.append(category)
            self_pay.append(part)
            eligible.append(covered)
            not_covered.append(amount - part - covered)
        return Classified(categories, not_covered, [0] * len(items), self_pay, eligible, (), _total(items))
    notices = []
    lookup = view.get
    for index, item in enumerate(items):
        amount = item.amount
        found = lookup(item.code)
        if found is None:
            categories.append("C")
            not_covered.append(amount)
            over_limit.append(0)
            self_pay.append(0)
            eligible.append(0)
            notices.append(
                Notice(
                    code=NOT_IN_CATALOGUE,
                    message=f"line {index + 1} ({item.code}) is not in the item catalogue in force on the service "
                    f"date (version {view.version}): the patient pays it in full",
                    line=index,
                )
            )
            continue
        category = found.category
        if item.category is not None and item.category != category:
            raise CategoryMismatch(
                f"line {index + 1} ({item.code}) is category {category} in the item catalogue in force on the "
                f"service date (version {view.version}), not {item.category}",
                field=f"items[{index}].category",
            )
        over = 0
        cap = found.price_cap
        if cap is not None:
            unit_price = item.unit_price
            if unit_price is None or item.quantity is None:
                raise UnitPriceRequired(
                    f"the item catalogue caps the unit price of {item.code}; send quantity and unit_price",
                    field=f"items[{index}].unit_price",
                )
            if unit_price > cap:
                over = item.quantity * (unit_price - cap)
        in_catalogue = amount - over
        categories.append(category)
        over_limit.append(over)
        if category == "A":
            not_covered.append(0)
            self_pay.append(0)
            eligible.append(in_catalogue)
        elif category == "B":
            share = found.self_pay_share
            part = apply_rate(in_catalogue, b_share if share is None else share)
            not_covered.append(0)
            self_pay.append(part)
            eligible.append(in_catalogue - part)
        else:
            not_covered.append(in_catalogue)
            self_pay.append(0)
            eligible.append(0)
    return Classified(categories, not_covered, over_limit, self_pay, eligible, tuple(notices), _total(items))


def _total(items: Sequence[LineItem]) -> int:
    return sum([item.amount for item in items])


def classify_valid(items: Sequence[LineItem], view: CatalogueView | None, b_share: int) -> Classified | None:
    """``classify`` for a bill with nothing to refuse and nothing to note, in the same pass as the checks
    ``settlement.bills.validate_bill`` makes of each line: on the settle path of every bill, one pass over
    the lines instead of two (benchmarks/engine_bench.py).

    None for any other bill, for ``validate_bill`` and ``classify`` to refuse or note at their turns: no
    lines; a line whose amount is not int fen or whose quantity and unit price are out of place; a
    category that is not A, B or C (missing, with no catalogue in force); with a catalogue, a code it does
    not hold, a category it disagrees with, a price cap without the unit price; a total over
    ``MAX_BILL_FEN``."""
    categories: list[Category] = []
    not_covered: list[int] = []
    over_limit: list[int] = []
    self_pay: list[int] = []
    eligible: list[int] = []
    total = 0
    # Two loops, one without a catalogue and one with: a test per line of which it is costs a tenth.
    if view is None:
        for item in items:
            amount = item.amount
            if type(amount) is not int or amount < 0:
                return None
            quantity = item.quantity
            unit_price = item.unit_price
            if (quantity is not None or unit_price is not None) and (
                type(quantity) is not int
                or type(unit_price) is not int
                or quantity <= 0
                or unit_price < 0
                or quantity * unit_price != amount
            ):
                return None
            total += amount
            category = item.category
            if category == "A":
                not_covered.append(0)
                self_pay.append(0)
                eligible.append(amount)
            elif category == "B":
                part = apply_rate(amount, b_share)
                not_covered.append(0)
                self_pay.append(part)
                eligible.append(amount - part)
            elif category == "C":
                not_covered.append(amount)
                self_pay.append(0)
                eligible.append(0)
            else:
                return None
            categories.append(category)
        over_limit = [0] * len(items)
    else:
        entries = view._entries  # read here as ``get`` does, without a call per line
        for item in items:
            amount = item.amount
            if type(amount) is not int or amount < 0:
                return None
            quantity = item.quantity
            unit_price = item.unit_price
            if (quantity is not None or unit_price is not None) and (
                type(quantity) is not int
                or type(unit_price) is not int
                or quantity <= 0
                or unit_price < 0
                or quantity * unit_price != amount
            ):
                return None
            total += amount
            entry = entries.get(item.code)
            found = entry if entry is None or isinstance(entry, CatalogueItem) else view.get(item.code)
            if found is None or (item.category is not None and item.category != found.category):
                return None
            over = 0
            cap = found.price_cap
            if cap is not None:
                if unit_price is None or quantity is None:
                    return None
                if unit_price > cap:
                    over = quantity * (unit_price - cap)
            covered = amount - over
            category = found.category
            if category == "A":
                not_covered.append(0)
                self_pay.append(0)
                eligible.append(covered)
            elif category == "B":
                share = found.self_pay_share
                part = apply_rate(covered, b_share if share is None else share)
                not_covered.append(0)
                self_pay.append(part)
                eligible.append(covered - part)
            else:
                not_covered.append(covered)
                self_pay.append(0)
                eligible.append(0)
            categories.append(category)
            over_limit.append(over)
    if not items or total > MAX_BILL_FEN:
        return None
    return Classified(categories, not_covered, over_limit, self_pay, eligible, (), total)
