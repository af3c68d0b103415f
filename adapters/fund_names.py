"""Which funds the reports show, by which names, in which order: read from the policy book.

The ledger books one account per fund (``settlement.decision.account_of``): the three funds of the
first policies under their historical accounts (``insurance_fund``, ``priority_care_fund``,
``aid_fund``), any other fund as ``<code>_fund``, and the patient's share as ``patient``. A report
names each fund as the latest policy version that declares it does (a fund a later version
renamed shows its new name on older days too), and lists funds in the chain order of the latest
version, then the funds only older versions declare (the newest of them first), then any other
fund found in the ledger (by code), then the patient. A fund no version declares is named by its
code.
"""

from __future__ import annotations

from collections.abc import Iterable

from adapters.report_models import FundEntry
from settlement.chain import Chain
from settlement.decision import FUND_ACCOUNTS, account_of

# The funds with money columns of their own on a settlement (and fields of their own in reports).
NAMED_FUNDS: tuple[str, ...] = tuple(FUND_ACCOUNTS)
PATIENT = FundEntry(code="out_of_pocket", account="patient", name="个人自付", name_en="patient")
_CODE_OF_ACCOUNT = {account: code for code, account in FUND_ACCOUNTS.items()}


class FundDirectory:
    """Fund codes, ledger accounts and names, from every policy version (oldest to latest)."""

    def __init__(self, policies: Iterable[Chain] = ()) -> None:
        versions = sorted(policies, key=lambda policy: policy.effective_from)
        self.policies: tuple[Chain, ...] = tuple(versions)
        self._names: dict[str, tuple[str, str]] = {}
        for policy in reversed(versions):  # the latest version that declares a fund names it
            for fund in policy.funds:
                self._names.setdefault(fund.code, (fund.name, fund.name_en))
        self._rank = {code: index for index, code in enumerate(self._names)}

    def knows(self, code: str) -> bool:
        """Whether a policy version declares a fund with this code."""
        return code in self._names

    def entry(self, code: str) -> FundEntry:
        """The fund with this code: its account, and its names (the code when no version declares it)."""
        if code == PATIENT.code:
            return PATIENT
        name, name_en = self._names.get(code, (code, code))
        return FundEntry(code=code, account=account_of(code), name=name, name_en=name_en)

    def ordered(self, codes: Iterable[str]) -> list[str]:
        """The codes in report order: the policy book's funds first, then the others by code; once each."""
        unknown = len(self._rank)
        return sorted(set(codes), key=lambda code: (self._rank.get(code, unknown), code))

    def entries(self, codes: Iterable[str]) -> list[FundEntry]:
        return [self.entry(code) for code in self.ordered(codes)]


def code_of(account: str) -> str:
    """The fund code a ledger account books (``out_of_pocket`` for the patient's)."""
    if account == PATIENT.account:
        return PATIENT.code
    if account in _CODE_OF_ACCOUNT:
        return _CODE_OF_ACCOUNT[account]
    return account.removesuffix("_fund")
