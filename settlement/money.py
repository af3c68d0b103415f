"""Money and rates: integer fen, exact decimal rates, and the one rounding rule.

Money is always an ``int`` number of fen (1 yuan = 100 fen). A rate is an exact
decimal held as an integer number of parts per million, so every product of an
amount and a rate is an exact integer fraction. Rounding to the fen happens in
:func:`round_half_up` and nowhere else; Python's ``round`` is banker's rounding,
which is not what the policy says.
"""

from __future__ import annotations

from decimal import Decimal

RATE_SCALE = 1_000_000
"""A rate of 1.0 as parts per million. Six decimal places cover any published rate."""

FEN_PER_YUAN = 100

MAX_BILL_FEN = 10_000_000_000
"""100 million yuan: no line and no bill is larger. Larger is a typo or an attack, and the
bound keeps every product of an amount and a rate far inside what PostgreSQL's bigint holds."""


def round_half_up(numerator: int, denominator: int) -> int:
    """Round the non-negative fraction ``numerator / denominator`` half up to an int."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("round_half_up takes a non-negative numerator and a positive denominator")
    return (2 * numerator + denominator) // (2 * denominator)


def apply_rate(amount: int, rate_ppm: int) -> int:
    """``amount × rate``, rounded half up to the fen."""
    return round_half_up(amount * rate_ppm, RATE_SCALE)


def rate_from_decimal(value: Decimal) -> int:
    """An exact decimal rate (``Decimal('0.75')``) as parts per million.

    Raises ValueError when the rate has more precision than parts per million,
    because silently rounding a policy rate would change what people are paid.
    """
    scaled = value * RATE_SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"rate {value} has more than 6 decimal places")
    return int(scaled)


def fen_from_yuan(value: Decimal | int) -> int:
    """An exact yuan amount as fen; refuses sub-fen precision."""
    scaled = Decimal(value) * FEN_PER_YUAN
    if scaled != scaled.to_integral_value():
        raise ValueError(f"amount {value} yuan is not a whole number of fen")
    return int(scaled)


def format_rate(rate_ppm: int) -> str:
    """Parts per million as a decimal string with at least two places: 750000 -> '0.75'."""
    whole, fraction = divmod(rate_ppm, RATE_SCALE)
    return f"{whole}.{f'{fraction:06d}'.rstrip('0').ljust(2, '0')}"


def format_yuan(fen: int) -> str:
    """Fen as a yuan string with two decimals: 1234567 -> '12345.67'."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}{whole}.{part:02d}"


def spread(amount: int, weights: list[int], total_weight: int) -> list[int]:
    """Split ``amount`` over lines in proportion to ``weights`` by largest remainder.

    Shares sum to ``amount`` exactly and no share exceeds its weight (given
    ``amount <= total_weight``). Ties go to the earlier line, so results repeat.
    """
    if amount == 0:
        return [0] * len(weights)
    if amount == total_weight:
        return list(weights)
    shares = [amount * weight // total_weight for weight in weights]
    left = amount - sum(shares)
    if left:
        remainders = [amount * weight % total_weight for weight in weights]
        # sorted is stable, also with reverse=True: of equal remainders the earlier line comes first
        for index in sorted(range(len(weights)), key=remainders.__getitem__, reverse=True)[:left]:
            shares[index] += 1
    return shares
