"""National ID numbers (GB 11643-1999): validation, masking and the keyed lookup hash.

The raw number is never stored or logged. The database key is an HMAC-SHA256
of the number under a secret pepper, so a stolen table cannot be reversed by
hashing all 18-digit numbers. For display there is the masked form, keeping
only the first 3 and last 2 characters.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import operator
import re
from typing import Literal

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_SHAPE = re.compile(r"[1-9][0-9]{16}[0-9X]")  # ASCII only: full-width digits would hash differently
# For masking, anything that may hold a number: any run of 17 or more digits (of any script: full-width
# digits show the number just as well), with a check character X after it. Whatever surrounds the run,
# letters included ("req<ID>" in a request id); and a longer run is masked whole, since an ID can sit
# anywhere inside it.
_LOOKS_LIKE_ID = re.compile(r"\d{17,}[XxＸｘ]?")


class InvalidNationalId(ValueError):
    """Raised with a reason that never repeats the number itself."""


def check_character(first17: str) -> str:
    total = sum(map(operator.mul, map(int, first17), _WEIGHTS))
    return _CHECK_CHARS[total % 11]


def normalise(raw: str) -> str:
    """Strip spaces and upper-case the check character."""
    return raw.strip().upper()


def validate(raw: str) -> str:
    """The normalised ID, or InvalidNationalId saying what is wrong (without echoing it)."""
    national_id = normalise(raw)
    if len(national_id) != 18:
        raise InvalidNationalId("must be 18 characters")
    if not _SHAPE.fullmatch(national_id):
        raise InvalidNationalId("must be 17 digits followed by a digit or X, and not start with 0")
    try:
        birth = birth_date(national_id)
    except ValueError:
        raise InvalidNationalId("the birth date in characters 7-14 is not a real date") from None
    if birth.year < 1900:
        raise InvalidNationalId("the birth date in characters 7-14 is before 1900")
    if check_character(national_id[:17]) != national_id[17]:
        raise InvalidNationalId("the check character (18th) does not match")
    return national_id


def birth_date(national_id: str) -> dt.date:
    """The birth date a valid ID states in characters 7-14."""
    return dt.date(int(national_id[6:10]), int(national_id[10:12]), int(national_id[12:14]))


def sex(national_id: str) -> Literal["male", "female"]:
    """GB 11643: the 17th character, the sequence number's last digit, is odd for a man, even for a woman."""
    return "male" if int(national_id[16]) % 2 else "female"


def age_on(national_id: str, day: dt.date) -> int:
    """Whole years from the stated birth date to ``day`` (0 before the first birthday)."""
    birth = birth_date(national_id)
    return max(0, day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day)))


def mask(national_id: str) -> str:
    """First 3 and last 2 characters only: 110105********123X -> 110*************3X."""
    return national_id[:3] + "*" * (len(national_id) - 5) + national_id[-2:]


def person_key(national_id: str, pepper: bytes) -> bytes:
    """The lookup key: HMAC-SHA256(pepper, normalised ID)."""
    return hmac.new(pepper, normalise(national_id).encode("ascii"), hashlib.sha256).digest()


def make_id(region: str, birth: dt.date, sequence: int) -> str:
    """Build a valid ID (demo data and tests): 6-digit region, birth date, 3-digit sequence."""
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)


def redact(text: str) -> str:
    """Mask anything in free text that may contain a national ID: every run of 17 or more digits.

    A run keeps its first 3 and last 2 characters, as ``mask`` does; the rest of the text is unchanged.
    """
    return _LOOKS_LIKE_ID.sub(lambda match: mask(match.group(0)), text)
