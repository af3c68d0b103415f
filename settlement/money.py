"""Money and rates: integer fen, exact decimal rates, and the one rounding rule.

Money is always an ``int`` number of fen (1 yuan = 100 fen). A rate is an exact
decimal held as an integer number of parts per million, so every product of an
amount and a rate is an exact integer fraction. Rounding to the fen happens in
:func:`round_half_up` and nowhere else; Python's ``round`` is banker's rounding,
which is not what the policy says.
"""

from __future__ import annotations

import bisect
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
    # The point goes two digits from the end of the fen's digits: no division, and about half the time of
    # one (an answer's explanation writes some 25 amounts).
    if fen < 0:
        return f"-{format_yuan(-fen)}"
    if fen < FEN_PER_YUAN:
        return f"0.{fen:02d}"
    digits = str(fen)
    return f"{digits[:-2]}.{digits[-2:]}"


def format_yuan_grouped(fen: int) -> str:
    """Fen as yuan with thousands separators, for people reading a receipt: 298200 -> '2,982.00'."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}{whole:,}.{part:02d}"


_CAPITAL_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_CAPITAL_UNITS = ("仟", "佰", "拾", "")
_CAPITAL_SECTIONS = ("", "万", "亿", "万亿")


def _capital_group(group: int) -> str:
    """One group of four digits (1..9999) in capitals, without its leading zeros: 1001 -> 壹仟零壹."""
    text, zero_pending = "", False
    for digit, unit in zip(f"{group:04d}", _CAPITAL_UNITS, strict=True):
        if digit == "0":
            zero_pending = bool(text)
            continue
        if zero_pending:
            text, zero_pending = text + "零", False
        text += _CAPITAL_DIGITS[int(digit)] + unit
    return text


def yuan_in_capitals(fen: int) -> str:
    """An amount in Chinese capital numerals (大写), as a cheque or receipt writes it: 298200 ->
    贰仟玖佰捌拾贰元整, 100100 -> 壹仟零壹元整, 1010 -> 壹拾元壹角整, 5 -> 伍分, 0 -> 零元整.

    The habits of 《支付结算办法》's rules for writing amounts: 壹拾 (never a bare 拾), one 零 for a run
    of zeros inside the number, 零 between 元 and 分 when 角 is zero, and 整 when there are no 分.
    """
    if fen < 0:
        return "负" + yuan_in_capitals(-fen)
    whole, part = divmod(fen, FEN_PER_YUAN)
    jiao, fen_digit = divmod(part, 10)
    groups = []
    remaining = whole
    while remaining:
        remaining, group = divmod(remaining, 10_000)
        groups.append(group)
    if len(groups) > len(_CAPITAL_SECTIONS):
        raise ValueError(f"{whole} yuan is beyond the capitals this writes")
    text, zero_pending = "", False
    for index in reversed(range(len(groups))):
        group = groups[index]
        if group == 0:
            zero_pending = bool(text)
            continue
        if text and (zero_pending or group < 1000):
            text += "零"
        text += _capital_group(group) + _CAPITAL_SECTIONS[index]
        zero_pending = False
    if whole:
        text += "元"
    if not jiao and not fen_digit:
        return (text or "零元") + "整"
    if jiao:
        text += _CAPITAL_DIGITS[jiao] + "角"
    elif whole:
        text += "零"
    return text + (_CAPITAL_DIGITS[fen_digit] + "分" if fen_digit else "整")


def spread(amount: int, weights: list[int], total_weight: int) -> list[int]:
    """Split ``amount`` over lines in proportion to ``weights`` by largest remainder.

    Shares sum to ``amount`` exactly and no share exceeds its weight (given
    ``amount <= total_weight``). Ties go to the earlier line, so results repeat.
    """
    if amount == 0:
        return [0] * len(weights)
    if amount == total_weight:
        return list(weights)
    if total_weight <= 0 or sum(weights) != total_weight:
        return _spread_by_sorting(amount, weights, total_weight)
    return spread_whole(amount, weights, total_weight)


def spread_whole(amount: int, weights: list[int], total_weight: int) -> list[int]:
    """``spread`` for a caller that knows ``total_weight`` is ``sum(weights)`` and positive: the chain
    engine, at every step that pays part of what is left, where checking it would be a tenth of the work."""
    # With the weights summing to total_weight, the floored shares leave (sum of remainders) / total_weight
    # fen, one each for the lines with the largest remainders: those with a remainder of at least ``cut``,
    # the smallest remainder that gets one (cut > 0: the remainders are below total_weight and sum to
    # that many times it). Adding total_weight - cut before flooring gives them their fen in the same pass.
    remainders = [amount * weight % total_weight for weight in weights]
    left = sum(remainders) // total_weight
    if not left:
        return [amount * weight // total_weight for weight in weights]
    ordered = sorted(remainders)
    cut = ordered[-left]
    up = total_weight - cut
    shares = [(amount * weight + up) // total_weight for weight in weights]
    if left < len(ordered) and ordered[-left - 1] == cut:
        # Lines tie at the cut and not all of them get a fen: the earlier ones do.
        extra = len(ordered) - bisect.bisect_left(ordered, cut) - left
        for index in range(len(weights) - 1, -1, -1):
            if remainders[index] == cut:
                shares[index] -= 1
                extra -= 1
                if not extra:
                    break
    return shares


def _spread_by_sorting(amount: int, weights: list[int], total_weight: int) -> list[int]:
    """``spread`` by its definition: floor every share, then give the fen left over to the largest
    remainders, earlier lines first among equal ones."""
    shares = [amount * weight // total_weight for weight in weights]
    left = amount - sum(shares)
    if left:
        remainders = [amount * weight % total_weight for weight in weights]
        # sorted is stable, also with reverse=True: of equal remainders the earlier line comes first
        for index in sorted(range(len(weights)), key=remainders.__getitem__, reverse=True)[:left]:
            shares[index] += 1
    return shares
