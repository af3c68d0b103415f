"""Checks a bill must pass before any engine settles it: the ones the wire decoder cannot make, because
structs built in Python skip it."""

from __future__ import annotations

from settlement.errors import InvalidBill
from settlement.models import Bill
from settlement.money import MAX_BILL_FEN


def validate_bill(bill: Bill) -> None:
    """Refuse a bill without lines, with a non-int or negative amount, a category other than A, B or C, quantity ×
    unit price disagreeing with the amount, or a total over ``MAX_BILL_FEN``."""
    if not bill.items:
        raise InvalidBill("a bill needs at least one line", field="items")
    for index, item in enumerate(bill.items):
        amount = item.amount
        if type(amount) is not int:  # refuses float, Decimal and bool: money is int fen
            raise InvalidBill("amount must be an integer number of fen", field=f"items[{index}].amount")
        if amount < 0:
            raise InvalidBill("amount must not be negative", field=f"items[{index}].amount")
        if item.category not in ("A", "B", "C", None):
            raise InvalidBill("category must be A, B or C", field=f"items[{index}].category")
        quantity = item.quantity
        unit_price = item.unit_price
        if quantity is not None or unit_price is not None:
            if quantity is None or unit_price is None:
                raise InvalidBill(
                    "give quantity and unit_price together, or neither",
                    field=f"items[{index}].{'quantity' if quantity is None else 'unit_price'}",
                )
            if type(quantity) is not int or type(unit_price) is not int or quantity <= 0 or unit_price < 0:
                raise InvalidBill(
                    "quantity must be a positive integer and unit_price a non-negative integer number of fen",
                    field=f"items[{index}].quantity",
                )
            if quantity * unit_price != amount:
                raise InvalidBill(
                    f"quantity × unit_price is {quantity * unit_price} fen but amount is {amount}",
                    field=f"items[{index}].amount",
                )
    total = sum(item.amount for item in bill.items)
    if total > MAX_BILL_FEN:
        raise InvalidBill(f"the bill's total {total} fen is larger than {MAX_BILL_FEN} fen", field="items")
