"""Valid rows of every model, built with factory_boy; tests override what they exercise."""

from datetime import date
from decimal import Decimal

import factory
from eth_account import Account

from ccp.accounts.models import Client, FundLock
from ccp.clock import utcnow
from ccp.contracts.models import Contract, Currency, Pair
from ccp.orders.models import Order
from tests.conftest import NOW

# Contracts' expiry: 25 December of next year by the real clock, fixed for the whole run. Order
# validation and the API check contracts against the real clock, so a fixed date would stop every
# such test once it passed.
EXPIRY = date(utcnow().year + 1, 12, 25)


class CurrencyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Currency
        django_get_or_create = ("symbol",)

    symbol = factory.Sequence(lambda n: f"TK{n}")
    name = factory.LazyAttribute(lambda o: o.symbol)
    decimals = 18


class PairFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Pair
        django_get_or_create = ("base", "quote")

    base = factory.SubFactory(CurrencyFactory, symbol="BTC")
    quote = factory.SubFactory(CurrencyFactory, symbol="USDC", decimals=6)


class ContractFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contract

    pair = factory.SubFactory(PairFactory)
    collateral = factory.LazyAttribute(lambda o: o.pair.quote)
    kind = "call"
    strike_px = Decimal("100000")
    expiry_date = EXPIRY
    floor_px = Decimal("50000")
    cap_px = Decimal("150000")
    tick_size = Decimal("1")
    lot_size = Decimal("0.01")
    symbol = factory.LazyAttribute(
        lambda o: Contract.symbol_for(pair=o.pair, expiry_date=o.expiry_date, kind=o.kind, strike_px=o.strike_px)
    )


class ClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Client

    address = factory.LazyFunction(lambda: Account.create().address.lower())
    registered_at = NOW


class FundLockFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FundLock

    client = factory.SubFactory(ClientFactory)
    currency = factory.SubFactory(CurrencyFactory, symbol="USDC", decimals=6)
    fundlock = Decimal("1000")
    updated_at = NOW


class ReceivedOrderFactory(factory.django.DjangoModelFactory):
    """An order as the endpoint stores it: received, nothing locked yet. A buy of 1 call at 100."""

    class Meta:
        model = Order

    client = factory.SubFactory(ClientFactory)
    contract = factory.SubFactory(ContractFactory)
    client_order_id = factory.Sequence(lambda n: f"received-{n}")
    side = "buy"
    price = Decimal("100")
    quantity = Decimal("1")
    state = "received"
    created_at = NOW
    updated_at = NOW
