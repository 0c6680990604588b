"""A client's statement: every credit and debit of its collateral, per currency, adding up to its balance.

The balance (``fundlock + settle_value``) is what the chain holds for the client plus what settlement
still owes or takes: deposits seen on chain, plus every cash movement (auction premiums, expiry
payoffs, withdrawals, operator adjustments), confirmed or not. The order value and lockups are holds on
that balance, not movements. ``unrecorded`` is the part of a balance no line explains: credits made
outside the chain monitor (the demo simulator without a chain); zero otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from django.db.models import CharField, F, QuerySet, Sum, Value

from ccp.accounts.models import Client, FundLock
from ccp.money import ZERO, MoneyField
from ccp.settlement.models import CashMovement, CashMovementOrigin, Deposit

STATEMENT_KINDS = ("deposit", *CashMovementOrigin.values)


def statement_totals(*, client: Client) -> list[dict]:
    """Per currency the client ever held: the total of each kind of line, their sum, and the balance."""
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: dict.fromkeys(STATEMENT_KINDS, ZERO))
    for row in Deposit.objects.filter(client=client).values("currency__symbol").annotate(total=Sum("amount")):
        totals[row["currency__symbol"]]["deposit"] += row["total"]
    for row in (CashMovement.objects.filter(client=client).values("currency__symbol", "origin")
                .annotate(total=Sum("amount"))):
        totals[row["currency__symbol"]][row["origin"]] += row["total"]
    balances = {f.currency.symbol: f.fundlock + f.settle_value
                for f in FundLock.objects.filter(client=client).select_related("currency")}
    statement = []
    for symbol in sorted(set(totals) | set(balances)):
        kinds = totals[symbol]
        total = sum(kinds.values(), ZERO)
        balance = balances.get(symbol, ZERO)
        statement.append({"currency": symbol, **kinds, "total": total, "balance": balance,
                          "unrecorded": balance - total})
    return statement


_LINE = ("kind", "ref", "contract", "amount", "position_delta", "at", "line_id")


def statement_lines(*, client: Client, currency_symbol: str) -> QuerySet:
    """The client's deposits and cash movements in one currency, newest first, as rows of ``_LINE``."""
    deposits = (Deposit.objects.filter(client=client, currency__symbol=currency_symbol)
                .annotate(kind=Value("deposit", output_field=CharField()), ref=F("tx_hash"),
                          contract=Value(None, output_field=CharField()),
                          position_delta=Value(ZERO, output_field=MoneyField()), at=F("recorded_at"),
                          line_id=F("id"))
                .values(*_LINE))
    movements = (CashMovement.objects.filter(client=client, currency__symbol=currency_symbol)
                 .annotate(kind=F("origin"), ref=F("origin_ref"), contract_symbol=F("contract__symbol"),
                           at=F("created_at"), line_id=F("id"))
                 .values("kind", "ref", "contract_symbol", "amount", "position_delta", "at", "line_id"))
    return deposits.union(movements, all=True).order_by("-at", "kind", "-line_id")
