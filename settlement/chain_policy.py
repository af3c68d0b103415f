"""The chain policy file: its TOML form, its validation, and the ``Chain`` it becomes.

docs/policy-files.md is the reference a policy officer reads; ``policies/default.toml`` and
``policies/examples/three-tier/`` are worked files. Every number is an exact decimal (never a
float), money is yuan in the file and fen in the engine, rates are parts per million. Every error
names the file, the field path and the problem.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from settlement.chain import NAMED_FUNDS, Chain, Counts, Fund, InsurerLink, Rule, Step
from settlement.models import CLINIC_LEVELS, VISIT_TYPES, ClinicLevel, VisitType
from settlement.money import format_rate
from settlement.policy import BandFile, Checker, FileStruct, Number, convert_part, decode_file, parse_bands

# A fund's ledger account is <code>_fund, except the three named funds' historical accounts
# (settlement.decision.FUND_ACCOUNTS): these codes would share one of those accounts.
ACCOUNT_CLASHES = {"priority_care": "veteran_subsidy", "aid": "hardship_aid"}
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
FUND_TYPE = re.compile(r"^[0-9]{6}$")
INSTITUTION_CODE = re.compile(r"^[A-Z0-9]{12}$")
AREA_CODE = re.compile(r"^[0-9]{6}$")


class _DeductibleFile(FileStruct, frozen=True, kw_only=True):
    per_year_yuan: Number | None = None
    per_admission_yuan: Any = None  # a number, or a table of numbers by clinic level
    counter: str | None = None


class _YtdBandsFile(FileStruct, frozen=True, kw_only=True):
    threshold_yuan: Number = 0
    bands: list[BandFile]


class _YtdCounterFile(FileStruct, frozen=True, kw_only=True):
    name: str
    counts: Counts = "applied"


class _RuleFile(FileStruct, frozen=True, kw_only=True):
    visit_types: list[VisitType] | None = None
    levels: list[ClinicLevel] | None = None
    codes: list[str] | None = None
    members_of: dict[str, list[str]] = msgspec.field(default_factory=dict)
    deductible: _DeductibleFile | None = None
    rate: Any = None  # a number, or a table of numbers by clinic level
    bands: list[BandFile] | None = None
    ytd_bands: _YtdBandsFile | None = None
    annual_cap_yuan: Number | None = None
    paid_counter: str | None = None


class _FundFile(FileStruct, frozen=True, kw_only=True):
    name: str
    name_en: str = ""
    fund_type: str | None = None
    statutory: bool
    insured: bool = False
    programme: str | None = None
    codes: list[str] | None = None
    visit_types: list[VisitType] | None = None
    levels: list[ClinicLevel] | None = None
    referral: bool = False
    remote: bool = False
    ytd_counter: _YtdCounterFile | None = None
    paid_counter: str | None = None
    rules: list[_RuleFile]


class _EligibilityFile(FileStruct, frozen=True, kw_only=True):
    b_self_pay_first_share: Number
    inpatient_levels: list[ClinicLevel]


class _AdjustmentsFile(FileStruct, frozen=True, kw_only=True):
    de_minimis_yuan: Number = 1
    recover_overpayments: bool = False


class _InsurerFile(FileStruct, frozen=True, kw_only=True):
    url: str = ""
    institution_code: str
    institution_name: str
    area_code: str
    timeout_ms: int = 3000
    connect_timeout_ms: int = 500
    answer_id: str = "platform"


class _ChainFile(FileStruct, frozen=True, kw_only=True):
    id: str
    effective_from: dt.date
    description: str = ""
    chain: list[str]
    eligibility: _EligibilityFile
    programmes: dict[str, list[str]] = msgspec.field(default_factory=dict)
    funds: dict[str, Any]  # each entry converted on its own so errors name the fund (convert_part)
    adjustments: _AdjustmentsFile = msgspec.field(default_factory=_AdjustmentsFile)
    insurer: _InsurerFile | None = None


CounterKind = Literal["paid", "deductible", "year-to-date"]


class _Counters:
    """Every counter a chain names, with its kind and (for deductibles and year-to-date) its step."""

    def __init__(self, check: Checker) -> None:
        self.check = check
        self.kinds: dict[str, tuple[CounterKind, str]] = {}

    def add(self, name: str, kind: CounterKind, fund: str, path: str) -> str:
        if not NAME.match(name):
            raise self.check.fail(path, f"counter name {name!r} must be lower-case letters, digits and _")
        seen = self.kinds.setdefault(name, (kind, fund))
        if seen[0] != kind:
            raise self.check.fail(path, f"counter {name!r} is already a {seen[0]} counter; it cannot also be {kind}")
        if kind != "paid" and seen[1] != fund:
            raise self.check.fail(path, f"{kind} counter {name!r} already belongs to fund {seen[1]!r}")
        return name


def parse_chain(text: str, source: str) -> Chain:
    """Parse and validate one chain policy file's text. ``source`` names it in errors."""
    check = Checker(source)
    data = decode_file(text, _ChainFile, check)
    if not data.id.strip():
        raise check.fail("$.id", "must not be empty")

    programmes: dict[str, tuple[str, ...]] = {}
    for programme, codes in data.programmes.items():
        path = f"$.programmes.{programme}"
        _name(check, programme, path, "programme")
        if programme == "insurance":
            raise check.fail(path, "insurance is not a programme with codes: use insured = true on a fund")
        if not codes:
            raise check.fail(path, "needs at least one code")
        for index, code in enumerate(codes):
            _name(check, code, f"{path}[{index}]", "code")
        if len(set(codes)) != len(codes):
            raise check.fail(path, "a code is listed twice")
        programmes[programme] = tuple(codes)

    if not data.chain:
        raise check.fail("$.chain", "needs at least one fund")
    for index, code in enumerate(data.chain):
        if code not in data.funds:
            raise check.fail(f"$.chain[{index}]", f"fund {code!r} is not declared under [funds.{code}]")
        if code in data.chain[:index]:
            raise check.fail(f"$.chain[{index}]", f"fund {code!r} is already in the chain: one step per fund")
    for code in data.funds:
        if code not in data.chain:
            raise check.fail(f"$.funds.{code}", "declared but not in the chain")
    funds = {code: convert_part(raw, _FundFile, check, f"$.funds.{code}") for code, raw in data.funds.items()}

    inpatient_levels = tuple(level for level in CLINIC_LEVELS if level in data.eligibility.inpatient_levels)
    counters = _Counters(check)
    steps = []
    statutory_seen_last: str | None = None
    for index, code in enumerate(data.chain):
        fund_file = funds[code]
        path = f"$.funds.{code}"
        _name(check, code, path, "fund code")
        if code in ACCOUNT_CLASHES:
            raise check.fail(
                path,
                f"fund code {code!r} would be booked as {code}_fund, the ledger account of {ACCOUNT_CLASHES[code]!r}",
            )
        if not fund_file.statutory:
            statutory_seen_last = statutory_seen_last or code
        elif statutory_seen_last is not None:
            raise check.fail(
                f"$.chain[{index}]",
                f"statutory fund {code!r} comes after non-statutory fund {statutory_seen_last!r}: "
                "statutory payers pay first",
            )
        steps.append(_step(check, code, fund_file, path, programmes, inpatient_levels, counters))
    insurer = _insurer(check, data, steps)

    return Chain(
        id=data.id.strip(),
        effective_from=data.effective_from,
        description=data.description,
        b_self_pay_first_share=check.rate(
            data.eligibility.b_self_pay_first_share, "$.eligibility.b_self_pay_first_share"
        ),
        inpatient_levels=inpatient_levels,
        programmes=programmes,
        steps=tuple(steps),
        counters=tuple(counters.kinds),
        named_steps=tuple(  # type: ignore[arg-type]  # three entries, as NAMED_FUNDS
            data.chain.index(fund) if fund in data.chain else None for fund in NAMED_FUNDS
        ),
        de_minimis=check.money(data.adjustments.de_minimis_yuan, "$.adjustments.de_minimis_yuan"),
        recover_overpayments=data.adjustments.recover_overpayments,
        insurer=insurer,
    )


def _insurer(check: Checker, data: _ChainFile, steps: list[Step]) -> InsurerLink | None:
    """The ``[insurer]`` table, checked against the funds marked ``remote``: those lead the chain (the
    insurer's core pays first, the local steps on what it leaves), are statutory, carry the national fund
    type its answer names them by, and share no paid counter with a local step."""
    remote = [index for index, step in enumerate(steps) if step.remote]
    if not remote:
        if data.insurer is not None:
            raise check.fail("$.insurer", "no fund is remote = true: the insurer would pay nothing")
        return None
    if data.insurer is None:
        raise check.fail(f"$.funds.{steps[remote[0]].fund.code}.remote", "a remote fund needs an [insurer] table")
    for index in remote:
        fund = steps[index].fund
        if index != remote.index(index):
            raise check.fail(f"$.chain[{index}]", f"remote fund {fund.code!r} must come before every local fund")
        if fund.fund_type is None:
            raise check.fail(
                f"$.funds.{fund.code}.fund_type", "a remote fund needs its national fund type: the insurer names it so"
            )
    remote_counters = {rule.paid_counter for step in steps if step.remote for rule in step.rules}
    for step in steps:
        if not step.remote and (shared := remote_counters & {rule.paid_counter for rule in step.rules}):
            raise check.fail(
                f"$.funds.{step.fund.code}.paid_counter",
                f"counter {sorted(shared)[0]!r} is a remote fund's: the insurer keeps its own caps",
            )
    types = [steps[index].fund.fund_type for index in remote]
    if len(set(types)) != len(types):
        raise check.fail(
            "$.funds", "two remote funds have the same fund_type: the insurer's answer could not tell them apart"
        )
    link = data.insurer
    if not INSTITUTION_CODE.match(link.institution_code):
        raise check.fail("$.insurer.institution_code", "the institution code is 12 capital letters or digits")
    if not AREA_CODE.match(link.area_code):
        raise check.fail("$.insurer.area_code", "the area code is six digits, such as 330424")
    if not link.institution_name.strip():
        raise check.fail("$.insurer.institution_name", "must not be empty")
    if link.url and not link.url.startswith(("http://", "https://")):
        raise check.fail("$.insurer.url", "an http:// or https:// address")
    for name in ("timeout_ms", "connect_timeout_ms"):
        if not 10 <= getattr(link, name) <= 60_000:
            raise check.fail(f"$.insurer.{name}", "between 10 and 60000 milliseconds")
    if link.connect_timeout_ms > link.timeout_ms:
        raise check.fail("$.insurer.connect_timeout_ms", "cannot be longer than timeout_ms")
    if link.answer_id not in ("platform", "echo"):
        raise check.fail(
            "$.insurer.answer_id",
            '"platform" (answers carry the platform\'s own receipt id, as nationally) or "echo" (they echo our msgid)',
        )
    return InsurerLink(
        url=link.url.rstrip("/"),
        institution_code=link.institution_code,
        institution_name=link.institution_name.strip(),
        area_code=link.area_code,
        timeout_ms=link.timeout_ms,
        connect_timeout_ms=link.connect_timeout_ms,
        answer_id=link.answer_id,  # type: ignore[arg-type]  # "platform" | "echo", checked above
    )


def _step(
    check: Checker,
    code: str,
    data: _FundFile,
    path: str,
    programmes: dict[str, tuple[str, ...]],
    inpatient_levels: tuple[ClinicLevel, ...],
    counters: _Counters,
) -> Step:
    if not data.name.strip():
        raise check.fail(f"{path}.name", "must not be empty")
    if data.fund_type is not None and not FUND_TYPE.match(data.fund_type):
        raise check.fail(f"{path}.fund_type", "a national fund type is six digits, such as 390100")
    fund = Fund(
        code=code, name=data.name.strip(), name_en=data.name_en.strip(), fund_type=data.fund_type,
        statutory=data.statutory,
    )  # fmt: skip
    codes_in: tuple[str, ...] = ()
    if data.programme is not None:
        if data.programme not in programmes:
            raise check.fail(f"{path}.programme", f"programme {data.programme!r} is not declared under [programmes]")
        codes_in = programmes[data.programme]
    if data.codes is not None and data.programme is None:
        raise check.fail(f"{path}.codes", "codes need the fund's programme: set programme too")
    step_codes = _codes(check, data.codes, codes_in, data.programme, f"{path}.codes")
    ytd_counter = ytd_counts = None
    if data.ytd_counter is not None:
        ytd_counter = counters.add(data.ytd_counter.name, "year-to-date", code, f"{path}.ytd_counter.name")
        ytd_counts = data.ytd_counter.counts
    if not data.rules:
        raise check.fail(f"{path}.rules", "needs at least one rule")
    step_levels = _levels(data.levels)
    step_visits = data.visit_types
    rules = []
    for index, rule_file in enumerate(data.rules):
        rule_path = f"{path}.rules[{index}]"
        visits = _narrow(step_visits, rule_file.visit_types, VISIT_TYPES)
        # The levels where the rule can settle a bill (inpatient bills only where admissions are offered),
        # in CLINIC_LEVELS order so a policy's engine form, and the document stored for it, never vary.
        reach = tuple(
            level
            for level in CLINIC_LEVELS
            if level in _narrow(step_levels, rule_file.levels, CLINIC_LEVELS)
            and ("outpatient" in visits or level in inpatient_levels)
        )
        rules.append(_rule(check, code, rule_file, rule_path, data, programmes, codes_in, reach, ytd_counter, counters))
    rule_index: dict[tuple[str, str, str | None], int] = {}
    if not any(rule.members_of for rule in rules):
        for visit_type in VISIT_TYPES:
            for level in CLINIC_LEVELS:
                member_codes: tuple[str | None, ...] = (*codes_in,) if data.programme is not None else (None,)
                for member_code in member_codes:
                    rule_index[(visit_type, level, member_code)] = next(
                        (i for i, rule in enumerate(rules) if rule.matches(visit_type, level, member_code, {})), -1
                    )
    return Step(
        fund=fund,
        insured=data.insured,
        rule_index=rule_index,
        programme=data.programme,
        codes=step_codes,
        visit_types=tuple(step_visits) if step_visits is not None else None,
        levels=step_levels,
        referral=data.referral,
        remote=data.remote,
        ytd_counter=ytd_counter,
        ytd_counts=ytd_counts or "applied",
        rules=tuple(rules),
    )


def _rule(
    check: Checker,
    fund: str,
    data: _RuleFile,
    path: str,
    step: _FundFile,
    programmes: dict[str, tuple[str, ...]],
    codes_in: tuple[str, ...],
    reach: tuple[ClinicLevel, ...],
    ytd_counter: str | None,
    counters: _Counters,
) -> Rule:
    if data.codes is not None and step.programme is None:
        raise check.fail(f"{path}.codes", "codes need the fund's programme: set programme on the fund")
    codes = _codes(check, data.codes, codes_in, step.programme, f"{path}.codes")
    members_of = []
    for programme, member_codes in data.members_of.items():
        if programme not in programmes:
            raise check.fail(f"{path}.members_of.{programme}", "programme is not declared under [programmes]")
        wanted = _codes(check, member_codes, programmes[programme], programme, f"{path}.members_of.{programme}")
        assert wanted is not None  # a list was given
        members_of.append((programme, wanted))

    kinds = [name for name in ("rate", "bands", "ytd_bands") if getattr(data, name) is not None]
    if len(kinds) != 1:
        raise check.fail(path, "give exactly one of rate, bands or ytd_bands")
    fields: dict[str, Any] = {}
    if data.rate is not None:
        rates = _by_level(check, data.rate, reach, f"{path}.rate", "rate")
        fields = {
            "rate_kind": "flat",
            "rate_by_level": rates,
            "rate_text_by_level": {level: format_rate(rate) for level, rate in rates.items()},
        }
    elif data.bands is not None:
        fields = {"rate_kind": "bands", "bands": parse_bands(check, data.bands, f"{path}.bands")}
    else:
        assert data.ytd_bands is not None
        if ytd_counter is None:
            raise check.fail(f"{path}.ytd_bands", "bands over a year-to-date counter need ytd_counter on the fund")
        threshold = check.money(data.ytd_bands.threshold_yuan, f"{path}.ytd_bands.threshold_yuan")
        bands = parse_bands(check, data.ytd_bands.bands, f"{path}.ytd_bands.bands")
        if bands[0].up_to is not None and bands[0].up_to <= threshold:
            raise check.fail(f"{path}.ytd_bands.bands[0].up_to_yuan", "the first band must end above threshold_yuan")
        fields = {"rate_kind": "ytd_bands", "bands": bands, "threshold": threshold}

    deductible = data.deductible
    if deductible is not None:
        dpath = f"{path}.deductible"
        if fields["rate_kind"] == "ytd_bands":
            raise check.fail(dpath, "a rule over a year-to-date counter takes its threshold instead of a deductible")
        if (deductible.per_year_yuan is None) == (deductible.per_admission_yuan is None):
            raise check.fail(dpath, "give per_year_yuan (with its counter) or per_admission_yuan")
        if deductible.per_year_yuan is not None:
            if deductible.counter is None:
                raise check.fail(f"{dpath}.counter", "a per-year deductible needs a counter of what has been met")
            yearly = check.money(deductible.per_year_yuan, f"{dpath}.per_year_yuan")
            fields |= {
                "deductible": "per_year",
                "deductible_by_level": dict.fromkeys(reach, yearly),
                "deductible_counter": counters.add(deductible.counter, "deductible", fund, f"{dpath}.counter"),
            }
        else:
            if deductible.counter is not None:
                raise check.fail(f"{dpath}.counter", "a per-admission deductible starts afresh on every bill")
            fields |= {
                "deductible": "per_admission",
                "deductible_by_level": _by_level(
                    check, deductible.per_admission_yuan, reach, f"{dpath}.per_admission_yuan", "money"
                ),
            }

    paid_counter = data.paid_counter or step.paid_counter
    if paid_counter is None:
        raise check.fail(f"{path}.paid_counter", "name the counter of what the fund has paid (here or on the fund)")
    where = f"{path}.paid_counter" if data.paid_counter else f"$.funds.{fund}.paid_counter"
    annual_cap = None
    if data.annual_cap_yuan is not None:
        annual_cap = check.money(data.annual_cap_yuan, f"{path}.annual_cap_yuan")
    return Rule(
        visit_types=tuple(data.visit_types) if data.visit_types is not None else None,
        levels=_levels(data.levels),
        codes=codes,
        members_of=tuple(members_of),
        annual_cap=annual_cap,
        paid_counter=counters.add(paid_counter, "paid", fund, where),
        **fields,
    )


def _name(check: Checker, name: str, path: str, what: str) -> None:
    if not NAME.match(name):
        raise check.fail(path, f"{what} {name!r} must be lower-case letters, digits and _, starting with a letter")


def _codes(
    check: Checker, codes: list[str] | None, declared: tuple[str, ...], programme: str | None, path: str
) -> tuple[str, ...] | None:
    if codes is None:
        return None
    if not codes:
        raise check.fail(path, "an empty list matches nobody; leave it out to match every code")
    for index, code in enumerate(codes):
        if code not in declared:
            raise check.fail(f"{path}[{index}]", f"{code!r} is not a code of programme {programme!r}")
    return tuple(codes)


def _levels(levels: list[ClinicLevel] | None) -> tuple[ClinicLevel, ...] | None:
    return None if levels is None else tuple(level for level in CLINIC_LEVELS if level in levels)


def _narrow(outer: Iterable[str] | None, inner: Iterable[str] | None, every: tuple[str, ...]) -> list[str]:
    return [value for value in every if (outer is None or value in outer) and (inner is None or value in inner)]


def _by_level(
    check: Checker, value: Any, reach: tuple[ClinicLevel, ...], path: str, kind: Literal["rate", "money"]
) -> dict[ClinicLevel, int]:
    """A number for every level, or a table by level that must cover every level the rule reaches."""
    convert = check.rate if kind == "rate" else check.money
    if not isinstance(value, dict):
        number = convert(value, path)
        return dict.fromkeys(reach, number)
    for level in value:
        if level not in CLINIC_LEVELS:
            raise check.fail(f"{path}.{level}", f"unknown clinic level; expected one of {', '.join(CLINIC_LEVELS)}")
    result: dict[ClinicLevel, int] = {}
    for level in CLINIC_LEVELS:
        if level in value:
            result[level] = convert(value[level], f"{path}.{level}")
        elif level in reach:
            raise check.fail(f"{path}.{level}", "missing: the rule can settle bills at this level")
    return result
