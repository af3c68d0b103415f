"""Every policy version, picked by the service date."""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Iterator

from settlement.chain import Chain
from settlement.errors import NoPolicyInForce, PolicyError


class PolicyBook:
    """Every policy version, picked by service date.

    A version is in force from its ``effective_from`` until the next version's.
    Settled history never changes: each settlement carries the id of the version
    it used.
    """

    def __init__(self, policies: Iterable[Chain]) -> None:
        ordered = sorted(policies, key=lambda policy: policy.effective_from)
        seen_ids: set[str] = set()
        for index, policy in enumerate(ordered):
            if policy.id in seen_ids:
                raise PolicyError(policy.id, "$.id", "two policy files share this id")
            seen_ids.add(policy.id)
            if index and ordered[index - 1].effective_from == policy.effective_from:
                raise PolicyError(
                    policy.id,
                    "$.effective_from",
                    f"same effective date as {ordered[index - 1].id}: which one is in force would be ambiguous",
                )
        self._policies = tuple(ordered)
        self._starts = [policy.effective_from for policy in ordered]
        self._by_id = {policy.id: policy for policy in ordered}

    def __iter__(self) -> Iterator[Chain]:
        return iter(self._policies)

    def __len__(self) -> int:
        return len(self._policies)

    def in_force(self, service_date: dt.date) -> Chain:
        index = bisect.bisect_right(self._starts, service_date) - 1
        if index < 0:
            raise NoPolicyInForce(f"no policy is in force on {service_date.isoformat()}", field="service_date")
        return self._policies[index]

    def latest(self) -> Chain:
        """The version with the latest effective date (the one that defines current codes)."""
        return self._policies[-1]

    def by_id(self, policy_id: str) -> Chain:
        return self._by_id[policy_id]
