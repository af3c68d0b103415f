"""Errors the engine raises. Each has a stable ``code`` the gateway passes on."""

from __future__ import annotations


class SettlementError(Exception):
    """A bill the engine refuses. ``field`` is a JSON-style path when one applies."""

    code = "settlement_error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidBill(SettlementError):
    code = "invalid_bill"


class InpatientNotOffered(SettlementError):
    """Village stations (or any level the policy gives no inpatient rule) take no admissions."""

    code = "inpatient_not_offered"


class NoPolicyInForce(SettlementError):
    code = "no_policy_in_force"


class UnknownProgrammeCode(SettlementError):
    """The person's category or tier has no rule in the policy in force."""

    code = "unknown_programme_code"


class InsurerDisagrees(SettlementError):
    """The insurer's split cannot be booked on this bill: it pays more than the eligible amount the
    gateway's catalogue leaves, or names a fund the chain does not give it. Its settlement is undone."""

    code = "insurer_disagrees"


class PolicyError(Exception):
    """A policy file that does not validate: names the file, the field path and the problem."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        super().__init__(f"{source}: {path}: {problem}")
        self.source = source
        self.path = path
        self.problem = problem


class Refused(SettlementError):
    """A request a use case refuses, with the stable code it is refused under (``unknown_person``,
    ``idempotency_key_reused``...). The gateway maps the code to an HTTP status and a title in one
    catalogue (gateway/problems.py), for HTTP answers and card-reader frames alike."""

    def __init__(self, code: str, detail: str, *, field: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(detail, field=field)
        self.code = code
        self.retry_after = retry_after  # seconds, for a refusal that a later retry may not meet
