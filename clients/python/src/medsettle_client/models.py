"""The gateway's answers as typed values, and a bill to send.

Money is an ``int`` number of fen (1 yuan = 100 fen) everywhere, as on the wire. Answers are
decoded leniently: a field the gateway adds later is ignored, so an older client keeps working.
The gateway's OpenAPI document (``GET /openapi.json``) describes every field; these are the
ones a billing terminal reads.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec


class Item(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line of a bill. ``amount`` is in fen; with ``quantity``, ``quantity * unit_price == amount``."""

    code: str
    name: str
    amount: int
    category: Literal["A", "B", "C"] | None = None  # the item catalogue in force decides when left out
    quantity: int | None = None
    unit_price: int | None = None


class Bill(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A bill to settle. ``request_id`` is the terminal's own key for it: a retry sends the same one."""

    request_id: str
    clinic_id: str
    person_id: str
    visit_type: Literal["outpatient", "inpatient"]
    service_date: dt.date
    items: list[Item]
    referral: bool = False
    # What the hospital's own system (HIS) says of the bill, all optional: kept with the settlement and
    # printed on its receipt. Admission dates only on inpatient bills.
    his_visit_id: str | None = None  # the visit or admission number (门诊号 / 住院号)
    invoice_number: str | None = None
    operator: str | None = None
    diagnoses: list[str] = []  # ICD-10 codes, the main diagnosis first
    admitted_on: dt.date | None = None
    discharged_on: dt.date | None = None


class Payer(msgspec.Struct, frozen=True, kw_only=True):
    """One step of the policy's chain: the fund's code and name, and what it paid."""

    fund: str
    name: str
    amount: int


class Line(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a settled bill: its four buckets (they add up to ``amount``) and the patient's share."""

    code: str
    category: str
    amount: int
    not_covered: int
    over_limit: int
    self_pay_first: int
    eligible: int
    out_of_pocket: int


class Settlement(msgspec.Struct, frozen=True, kw_only=True):
    """A settled bill. ``sum(payer.amount for payer in payers) + out_of_pocket == total`` always.

    ``replayed`` is true when this is the first answer given again to a retry: nothing was
    settled twice."""

    settlement_id: str
    request_id: str
    terminal_id: str
    clinic_id: str
    person: str  # the national ID, masked
    visit_type: str
    service_date: dt.date
    policy_version: str
    total: int
    insurance: int
    veteran_subsidy: int
    hardship_aid: int
    out_of_pocket: int
    payers: tuple[Payer, ...]
    lines: tuple[Line, ...]
    explanation: tuple[str, ...]
    created_at: dt.datetime
    replayed: bool = False
    reversed: bool = False
    his_visit_id: str | None = None
    invoice_number: str | None = None
    operator: str | None = None
    diagnoses: tuple[str, ...] = ()
    admitted_on: dt.date | None = None
    discharged_on: dt.date | None = None


class Reversal(msgspec.Struct, frozen=True, kw_only=True):
    """A settlement given back (冲正): what each fund returns."""

    reversal_id: str
    settlement_id: str
    request_id: str
    total: int
    insurance: int
    veteran_subsidy: int
    hardship_aid: int
    out_of_pocket: int
    created_at: dt.datetime
    replayed: bool = False


class FundStanding(msgspec.Struct, frozen=True, kw_only=True):
    """One fund of the chain for a person: whether it can pay, and what is left of its annual cap."""

    fund: str
    name: str
    applies: bool
    annual_cap: int | None
    used: int
    remaining: int | None


class Eligibility(msgspec.Struct, frozen=True, kw_only=True):
    """Who the ID belongs to (to check against the patient at the counter) and what each fund can still pay."""

    person: str
    name: str
    sex: str
    age: int
    service_date: dt.date
    policy_version: str
    insured: bool
    funds: tuple[FundStanding, ...]


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """A refusal (RFC 9457): ``code`` is stable, ``field`` names the offending part of the request, and
    ``trace_id`` is what to quote to the operator."""

    status: int
    code: str
    title: str = ""
    detail: str = ""
    trace_id: str = ""
    field: str | None = None
    retry_after: int | None = None
    server_time: int | None = None  # the gateway's clock (Unix seconds), when a timestamp was refused
