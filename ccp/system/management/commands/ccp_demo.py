"""Demo data for a local run: an operator account, currencies, pairs and listed expiry series.

Idempotent: run it on every start; it only adds what is missing.
"""

import os
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from ccp.clock import utcnow
from ccp.contracts.models import Currency, Pair
from ccp.contracts.payoffs import ContractKind
from ccp.contracts.services import SeriesSpec, contract_series_create
from ccp.prices.models import VenueSymbol

DEMO_PAIRS = {
    # base: (strikes, floor, cap, tick, lot)
    "BTC": ([Decimal(s) for s in ("80000", "90000", "100000", "110000", "120000")],
            Decimal("50000"), Decimal("150000"), Decimal("1"), Decimal("0.01")),
    "ETH": ([Decimal(s) for s in ("2500", "3000", "3500", "4000")],
            Decimal("1000"), Decimal("6000"), Decimal("0.1"), Decimal("0.1")),
}


class Command(BaseCommand):
    help = "Create the demo operator and list demo contracts (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options):
        now = utcnow()
        username = os.environ.get("CCP_DEMO_USER", "operator")
        user_model = get_user_model()
        if not user_model.objects.filter(username=username).exists():
            user_model.objects.create_superuser(username, f"{username}@localhost",
                                                os.environ.get("CCP_DEMO_PASSWORD", "operator"))
        usdc, _ = Currency.objects.get_or_create(symbol="USDC", defaults={"name": "USD Coin", "decimals": 6})
        listed = 0
        for base_symbol, (strikes, floor_px, cap_px, tick, lot) in DEMO_PAIRS.items():
            base, _ = Currency.objects.get_or_create(symbol=base_symbol, defaults={"name": base_symbol})
            pair, _ = Pair.objects.get_or_create(base=base, quote=usdc)
            for venue, symbol in (("gemini", f"{base_symbol}/USD"), ("coinbase", f"{base_symbol}/USDC"),
                                  ("binance", f"{base_symbol}/USDC")):
                VenueSymbol.objects.get_or_create(pair=pair, venue=venue, defaults={"symbol": symbol})
            for days_ahead in (1, 2, 7):
                spec = SeriesSpec(
                    pair=pair, collateral=usdc, expiry_date=(now + timedelta(days=days_ahead)).date(),
                    kinds=(ContractKind.CALL, ContractKind.PUT, ContractKind.FUTURE), strikes=tuple(strikes),
                    floor_px=floor_px, cap_px=cap_px, tick_size=tick, lot_size=lot,
                )
                listed += len(contract_series_create(spec=spec, now=now))
        self.stdout.write(f"demo ready: operator '{username}', {listed} new contract(s) listed")
