"""Client for the medsettle settlement gateway: signs every request, retries safely, typed answers."""

from medsettle_client.client import Answer, Client, GatewayError
from medsettle_client.models import (
    Bill,
    Eligibility,
    FundStanding,
    Item,
    Line,
    Payer,
    Problem,
    Reversal,
    Settlement,
)

__all__ = [
    "Answer",
    "Bill",
    "Client",
    "Eligibility",
    "FundStanding",
    "GatewayError",
    "Item",
    "Line",
    "Payer",
    "Problem",
    "Reversal",
    "Settlement",
]
