"""Policy as data: the TOML policy file, its validation, and picking the version in force.

A policy file is parsed with every number as an exact ``Decimal`` (never a float),
checked field by field, and turned into the engine's form: money in fen, rates in
parts per million. Errors name the file, the field path and the problem.

Reading files is the caller's job (see ``adapters.policy_files``); this module
parses text so the engine stays free of IO.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from settlement.errors import PolicyError
from settlement.models import CLINIC_LEVELS, ClinicLevel, VisitType
from settlement.money import fen_from_yuan, format_rate, rate_from_decimal

VETERAN_CATEGORIES: tuple[str, ...] = ("disabled_veteran", "priority_care")
MAX_POLICY_YUAN = 10**10  # no deductible, cap or band edge is anywhere near this; larger is a typo
HARDSHIP_TIERS: tuple[str, ...] = (
    "destitute",
    "minimum_allowance",
    "marginal",
    "low_income",
    "medical_hardship",
)


# ---------------------------------------------------------------- engine form


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    pass


class LevelRule(Rule, frozen=True, kw_only=True):
    outpatient_rate: int
    inpatient_rate: int | None
    inpatient_deductible: int | None

    @property
    def offers_inpatient(self) -> bool:
        return self.inpatient_rate is not None


class InsuranceRule(Rule, frozen=True, kw_only=True):
    outpatient_deductible: int
    outpatient_cap: int
    inpatient_cap: int
    levels: dict[ClinicLevel, LevelRule]


class CategoryRule(Rule, frozen=True, kw_only=True):
    outpatient_rate: int
    inpatient_rate: int
    annual_cap: int

    def rate(self, visit_type: VisitType) -> int:
        return self.outpatient_rate if visit_type == "outpatient" else self.inpatient_rate


class Band(Rule, frozen=True, kw_only=True):
    """Rate for the part of the base from the previous band's ``up_to`` to this one's."""

    up_to: int | None
    rate: int
    rate_text: str


class TierRule(Rule, frozen=True, kw_only=True):
    outpatient_rate: int
    inpatient_bands: tuple[Band, ...]
    annual_cap: int
    ytd_unpaid_threshold: int


class Policy(Rule, frozen=True, kw_only=True):
    id: str
    effective_from: dt.date
    description: str
    b_self_pay_first_share: int
    insurance: InsuranceRule
    veteran_categories: dict[str, CategoryRule]
    hardship_tiers: dict[str, TierRule]


# ---------------------------------------------------------------- file form

# Numbers are typed Any here so msgspec leaves them as parsed (it would turn "0.75" into a
# Decimal); Checker.number accepts only TOML integers and decimals.
Number = Any


class FileStruct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


FileT = TypeVar("FileT", bound=FileStruct)


class _LevelFile(FileStruct, frozen=True, kw_only=True):
    outpatient_rate: Number
    inpatient_rate: Number | None = None
    inpatient_deductible_yuan: Number | None = None


class _InsuranceFile(FileStruct, frozen=True, kw_only=True):
    outpatient_deductible_yuan: Number
    outpatient_cap_yuan: Number
    inpatient_cap_yuan: Number
    levels: dict[str, _LevelFile]


class _CategoryFile(FileStruct, frozen=True, kw_only=True):
    outpatient_rate: Number
    inpatient_rate: Number
    annual_cap_yuan: Number


class _CategoriesFile(FileStruct, frozen=True, kw_only=True):
    categories: dict[str, _CategoryFile]


class BandFile(FileStruct, frozen=True, kw_only=True):
    rate: Number
    up_to_yuan: Number | None = None


class _TierFile(FileStruct, frozen=True, kw_only=True):
    outpatient_rate: Number
    inpatient_bands: list[BandFile]
    annual_cap_yuan: Number
    ytd_unpaid_threshold_yuan: Number = 0


class _TiersFile(FileStruct, frozen=True, kw_only=True):
    tiers: dict[str, _TierFile]


class _EligibilityFile(FileStruct, frozen=True, kw_only=True):
    b_self_pay_first_share: Number


class _PolicyFile(FileStruct, frozen=True, kw_only=True):
    id: str
    effective_from: dt.date
    eligibility: _EligibilityFile
    insurance: _InsuranceFile
    veteran_subsidy: _CategoriesFile
    hardship_aid: _TiersFile
    description: str = ""


class Checker:
    """Turns file values into engine values, raising PolicyError with the field path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> PolicyError:
        return PolicyError(self.source, path, problem)

    def number(self, value: Number, path: str) -> Decimal:
        """Only TOML numbers: msgspec would turn the string "0.75" into a Decimal, and bool is an int."""
        if type(value) is int:
            return Decimal(value)
        if type(value) is not Decimal:
            raise self.fail(path, f"expected a number, got {type(value).__name__}")
        if not value.is_finite():
            raise self.fail(path, f"{value} is not a finite number")
        return value

    def rate(self, value: Number, path: str) -> int:
        value = self.number(value, path)
        if not 0 <= value <= 1:
            raise self.fail(path, f"rate {value} must be between 0 and 1")
        try:
            return rate_from_decimal(Decimal(value))
        except ValueError as error:
            raise self.fail(path, str(error)) from None

    def money(self, value: Number, path: str) -> int:
        value = self.number(value, path)
        if value < 0:
            raise self.fail(path, f"amount {value} must be >= 0")
        if value > MAX_POLICY_YUAN:
            raise self.fail(path, f"amount {value} is larger than {MAX_POLICY_YUAN} yuan")
        try:
            return fen_from_yuan(value)
        except ValueError as error:
            raise self.fail(path, str(error)) from None

    def keys(self, found: Iterable[str], expected: tuple[str, ...], path: str, what: str) -> None:
        found = list(found)
        for name in found:
            if name not in expected:
                raise self.fail(f"{path}.{name}", f"unknown {what}; expected one of {', '.join(expected)}")
        for name in expected:
            if name not in found:
                raise self.fail(f"{path}.{name}", f"missing: every {what} must have a rule")


def decode_file(text: str, shape: type[FileT], check: Checker) -> FileT:
    """TOML text in the shape of a file struct; every number an exact Decimal, errors with a path."""
    try:
        raw: dict[str, Any] = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as error:
        raise check.fail("$", f"not valid TOML: {error}") from None
    return convert_part(raw, shape, check, "$")


def convert_part(raw: Any, shape: type[FileT], check: Checker, at: str) -> FileT:
    """One part of a decoded file (at path ``at``) in the shape of a file struct.

    Converting a table's entries one by one keeps their keys in error paths: msgspec writes a
    key of a dict as ``[...]``."""
    try:
        return msgspec.convert(raw, shape)
    except msgspec.ValidationError as error:
        message = str(error)
        path = message.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in message else "$"
        raise check.fail(at + path[1:], message.split(" - at `")[0]) from None


def parse_policy(text: str, source: str) -> Policy:
    """Parse and validate one policy file's text. ``source`` names it in errors."""
    check = Checker(source)
    data = decode_file(text, _PolicyFile, check)

    if not data.id.strip():
        raise check.fail("$.id", "must not be empty")

    ins = data.insurance
    check.keys(ins.levels, CLINIC_LEVELS, "$.insurance.levels", "clinic level")
    levels: dict[ClinicLevel, LevelRule] = {}
    for level in CLINIC_LEVELS:
        path = f"$.insurance.levels.{level}"
        rule = ins.levels[level]
        if (rule.inpatient_rate is None) != (rule.inpatient_deductible_yuan is None):
            raise check.fail(
                path,
                "give both inpatient_rate and inpatient_deductible_yuan, or neither for a level without inpatient care",
            )
        levels[level] = LevelRule(
            outpatient_rate=check.rate(rule.outpatient_rate, f"{path}.outpatient_rate"),
            inpatient_rate=None
            if rule.inpatient_rate is None
            else check.rate(rule.inpatient_rate, f"{path}.inpatient_rate"),
            inpatient_deductible=None
            if rule.inpatient_deductible_yuan is None
            else check.money(rule.inpatient_deductible_yuan, f"{path}.inpatient_deductible_yuan"),
        )
    insurance = InsuranceRule(
        outpatient_deductible=check.money(ins.outpatient_deductible_yuan, "$.insurance.outpatient_deductible_yuan"),
        outpatient_cap=check.money(ins.outpatient_cap_yuan, "$.insurance.outpatient_cap_yuan"),
        inpatient_cap=check.money(ins.inpatient_cap_yuan, "$.insurance.inpatient_cap_yuan"),
        levels=levels,
    )

    categories = data.veteran_subsidy.categories
    check.keys(categories, VETERAN_CATEGORIES, "$.veteran_subsidy.categories", "priority-care category")
    veteran_categories = {}
    for name in VETERAN_CATEGORIES:
        path = f"$.veteran_subsidy.categories.{name}"
        category = categories[name]
        veteran_categories[name] = CategoryRule(
            outpatient_rate=check.rate(category.outpatient_rate, f"{path}.outpatient_rate"),
            inpatient_rate=check.rate(category.inpatient_rate, f"{path}.inpatient_rate"),
            annual_cap=check.money(category.annual_cap_yuan, f"{path}.annual_cap_yuan"),
        )

    tiers = data.hardship_aid.tiers
    check.keys(tiers, HARDSHIP_TIERS, "$.hardship_aid.tiers", "hardship tier")
    hardship_tiers = {}
    for name in HARDSHIP_TIERS:
        path = f"$.hardship_aid.tiers.{name}"
        tier = tiers[name]
        if name == "medical_hardship" and check.number(tier.outpatient_rate, f"{path}.outpatient_rate") != 0:
            raise check.fail(f"{path}.outpatient_rate", "medical_hardship pays only on inpatient bills: use 0.00")
        hardship_tiers[name] = TierRule(
            outpatient_rate=check.rate(tier.outpatient_rate, f"{path}.outpatient_rate"),
            inpatient_bands=parse_bands(check, tier.inpatient_bands, f"{path}.inpatient_bands"),
            annual_cap=check.money(tier.annual_cap_yuan, f"{path}.annual_cap_yuan"),
            ytd_unpaid_threshold=check.money(tier.ytd_unpaid_threshold_yuan, f"{path}.ytd_unpaid_threshold_yuan"),
        )

    return Policy(
        id=data.id.strip(),
        effective_from=data.effective_from,
        description=data.description,
        b_self_pay_first_share=check.rate(
            data.eligibility.b_self_pay_first_share, "$.eligibility.b_self_pay_first_share"
        ),
        insurance=insurance,
        veteran_categories=veteran_categories,
        hardship_tiers=hardship_tiers,
    )


def parse_bands(check: Checker, bands: list[BandFile], path: str) -> tuple[Band, ...]:
    if not bands:
        raise check.fail(path, "needs at least one band")
    result = []
    previous = 0
    for index, band in enumerate(bands):
        band_path = f"{path}[{index}]"
        last = index == len(bands) - 1
        if band.up_to_yuan is None and not last:
            raise check.fail(f"{band_path}.up_to_yuan", "only the last band may be open-ended")
        if band.up_to_yuan is not None and last:
            raise check.fail(f"{band_path}.up_to_yuan", "the last band must be open-ended (leave out up_to_yuan)")
        up_to = None if band.up_to_yuan is None else check.money(band.up_to_yuan, f"{band_path}.up_to_yuan")
        if up_to is not None:
            if up_to <= previous:
                raise check.fail(f"{band_path}.up_to_yuan", "bands must be in ascending order of up_to_yuan")
            previous = up_to
        rate = check.rate(band.rate, f"{band_path}.rate")
        result.append(Band(up_to=up_to, rate=rate, rate_text=format_rate(rate)))
    return tuple(result)
