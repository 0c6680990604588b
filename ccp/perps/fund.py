"""The insurance fund: an ordinary client at ``CCP_INSURANCE_FUND_ADDRESS`` whose fund lock per collateral
currency is its balance (fundlock + settle value, as any client's). Operators fund it by depositing from that
address on chain; liquidation fees are paid into it, takeovers and its unwinds trade from it, and its cash
movements settle on chain like every other. It is never liquidated itself, never deleveraged, and never a
counterparty an API caller can name.

Creating it is race-safe and idempotent: ``INSERT ... ON CONFLICT DO NOTHING`` on the address (and on
(client, currency) for its fund locks), then a read; rows are never locked here (``ccp.locks`` 5 belongs to
the caller).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.conf import settings

from ccp.accounts.models import Client, FundLock
from ccp.clock import require_aware


def insurance_fund_address() -> str:
    return settings.CCP_INSURANCE_FUND_ADDRESS


def insurance_fund_client(*, now: datetime) -> Client:
    """The insurance fund's client, created on first use."""
    address = insurance_fund_address()
    client = Client.objects.filter(address=address).first()
    if client is None:
        Client.objects.bulk_create([Client(address=address, registered_at=require_aware(now))],
                                   ignore_conflicts=True)
        client = Client.objects.get(address=address)
    return client


def insurance_fund_locks(*, currency_ids: Collection[int], now: datetime) -> dict[int, FundLock]:
    """The insurance fund's fund lock per currency of ``currency_ids`` (created empty on first use), read,
    not locked."""
    client = insurance_fund_client(now=now)
    found = {f.currency_id: f for f in FundLock.objects.filter(client=client, currency_id__in=currency_ids)}
    if any(not f.insurance_fund for f in found.values()):  # made by a deposit before the fund was first used
        FundLock.objects.filter(client=client, currency_id__in=currency_ids, insurance_fund=False).update(
            insurance_fund=True)
        found = {f.currency_id: f for f in FundLock.objects.filter(client=client, currency_id__in=currency_ids)}
    missing = set(currency_ids) - set(found)
    if missing:
        FundLock.objects.bulk_create([FundLock(client=client, currency_id=currency_id, insurance_fund=True,
                                               updated_at=require_aware(now))
                                      for currency_id in sorted(missing)], ignore_conflicts=True)
        found = {f.currency_id: f for f in FundLock.objects.filter(client=client, currency_id__in=currency_ids)}
    return found
