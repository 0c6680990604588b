from datetime import date, datetime

from django.conf import settings
from django.db.models import OuterRef, QuerySet, Subquery

from ccp.contracts.models import Contract, ContractState, Pair
from ccp.prices.models import ReferencePrice


def contract_list(*, underlying: str | None = None, expiry_date: date | None = None, kind: str | None = None,
                  state: str | None = None) -> QuerySet[Contract]:
    """Contracts, filtered; ``underlying`` is a pair such as BTC/USDC (or BTC-USDC) or a base symbol."""
    latest = ReferencePrice.objects.filter(contract=OuterRef("pk")).order_by("-at", "-id").values("price")[:1]
    contracts = Contract.objects.select_related("pair__base", "pair__quote", "collateral", "perpetual").annotate(
        latest_reference_price=Subquery(latest))
    if underlying:
        base, _, quote = underlying.upper().replace("-", "/").partition("/")
        contracts = contracts.filter(pair__base__symbol=base)
        if quote:
            contracts = contracts.filter(pair__quote__symbol=quote)
    if expiry_date:
        contracts = contracts.filter(expiry_date=expiry_date)
    if kind:
        contracts = contracts.filter(kind=kind)
    if state:
        contracts = contracts.filter(state=state)
    return contracts.order_by("expiry_date", "pair_id", "kind", "strike_px")  # perpetuals (no expiry) last



def expiries_to_settle(*, now: datetime) -> list[tuple[Pair, date, datetime]]:
    """(pair, expiry date, expiry time) of expired contracts whose settlement delay has passed."""
    due = []
    seen = set()
    for contract in Contract.objects.filter(state=ContractState.EXPIRED).select_related(
            "pair__base", "pair__quote").order_by("expiry_date", "pair_id"):
        key = (contract.pair_id, contract.expiry_date)
        if key not in seen and now >= contract.expires_at + settings.CCP_SETTLEMENT_DELAY:
            seen.add(key)
            due.append((contract.pair, contract.expiry_date, contract.expires_at))
    return due
