"""National ID validation (GB 11643), masking, the keyed hash, and log redaction."""

from __future__ import annotations

import datetime as dt

import pytest

from adapters import identity

VALID = "11010519491231002X"  # the standard's own example


def test_valid_ids_pass_and_normalise():
    assert identity.validate(VALID) == VALID
    assert identity.validate(" 11010519491231002x ") == VALID
    made = identity.make_id("410102", dt.date(1988, 2, 29), 17)
    assert identity.validate(made) == made


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("110105194912310021", "check character"),
        ("1101051949123100", "18 characters"),
        ("01010519491231002X", "17 digits"),
        ("11010519491231002Y", "17 digits"),
        ("110105194902300021", "not a real date"),  # 30 February
        ("110105198902290021", "not a real date"),  # 1989 is not a leap year
        ("110105180001010021", "before 1900"),
        ("１１０１０５１９４９１２３１００２Ｘ", "17 digits"),  # full-width digits: refused, not hashed differently
    ],
)
def test_invalid_ids_are_refused_without_echoing_them(raw, reason):
    with pytest.raises(identity.InvalidNationalId) as refused:
        identity.validate(raw)
    assert reason in str(refused.value)
    assert raw.strip() not in str(refused.value)


def test_mask_keeps_only_first_three_and_last_two():
    assert identity.mask(VALID) == "110*************2X"


def test_person_key_is_keyed_and_stable():
    key = identity.person_key(VALID, b"pepper-a")
    assert len(key) == 32
    assert key == identity.person_key(VALID.lower(), b"pepper-a")
    assert key != identity.person_key(VALID, b"pepper-b")


def test_redact_masks_ids_in_free_text():
    text = f"lookup failed for {VALID} at clinic C001; order 123"
    assert identity.redact(text) == "lookup failed for 110*************2X at clinic C001; order 123"


@pytest.mark.parametrize(
    "text",
    [
        f"req{VALID}",  # glued to letters, as in an X-Request-Id
        f"{VALID}abc",
        f"req{VALID.lower()}-7",
        f"_{VALID}_",
        f"order9{VALID}",  # inside a longer run of digits: a 19-character run
        f"{VALID[:17]}12345",  # 22 digits: whatever is inside is not shown
        f"Object contains unknown field `{VALID}`",
        "１１０１０５１９４９１２３１００２Ｘ",  # full-width digits are still the number
    ],
)
def test_redact_masks_any_run_of_17_or_more_digits_whatever_surrounds_it(text):
    redacted = identity.redact(text)
    assert VALID[3:16] not in redacted and "０５１９４９１２３１" not in redacted
    assert "*" * 13 in redacted


def test_redact_leaves_shorter_numbers_and_text_alone():
    text = "clinic C001, order 1234567890123456, 16 digits, at 2026-05-01T10:00:00Z, abcdefXXX"
    assert identity.redact(text) == text


def test_redact_keeps_the_first_three_and_last_two_characters_of_the_run():
    assert identity.redact(f"req{VALID}") == "req110*************2X"
    assert identity.redact("9" + VALID) == "911**************2X"


def test_sex_and_age_are_what_the_number_states():
    # 110105 1949-12-31 sequence 002: the 17th character, 2, is even.
    assert identity.sex(VALID) == "female"
    assert identity.sex(identity.make_id("110105", dt.date(1949, 12, 31), 1)) == "male"
    assert identity.birth_date(VALID) == dt.date(1949, 12, 31)
    assert identity.age_on(VALID, dt.date(2026, 12, 30)) == 76  # the day before the birthday
    assert identity.age_on(VALID, dt.date(2026, 12, 31)) == 77
    assert identity.age_on(identity.make_id("110105", dt.date(2026, 3, 1), 1), dt.date(2026, 2, 1)) == 0
