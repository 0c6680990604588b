from datetime import date

from django.db.models import QuerySet

from ccp.contracts.models import Contract


def contract_list(*, underlying: str | None = None, expiry_date: date | None = None, kind: str | None = None,
                  state: str | None = None) -> QuerySet[Contract]:
    """Contracts, filtered; ``underlying`` is a pair such as BTC/USDC (or BTC-USDC) or a base symbol."""
    contracts = Contract.objects.select_related("pair__base", "pair__quote", "collateral")
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
    return contracts.order_by("expiry_date", "pair_id", "kind", "strike_px")

