from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

from ccp.clock import require_aware
from ccp.contracts.models import Contract, ContractState, Currency, Pair
from ccp.contracts.payoffs import ContractKind, Terms, payoff_per_unit
from ccp.db import book_lock, bulk_update_rows
from ccp.errors import ApplicationError, Conflict
from ccp.money import money_str, quantize
from ccp.orders.states import OPEN_STATES
from ccp.settlement.models import CashMovement, CashMovementOrigin
from ccp.streams import client_group, stream_publish


@dataclass(frozen=True)
class SeriesSpec:
    """What an operator lists at once: one expiry of one pair, several kinds and strikes."""

    pair: Pair
    collateral: Currency
    expiry_date: date
    kinds: tuple[ContractKind, ...]
    strikes: tuple[Decimal, ...]  # for calls and puts; a future takes none
    floor_px: Decimal
    cap_px: Decimal
    tick_size: Decimal
    lot_size: Decimal


def _on_grid(value: Decimal, step: Decimal) -> bool:
    return value % step == 0


def _series_validate(spec: SeriesSpec, now: datetime) -> None:
    if spec.collateral != spec.pair.quote:
        # Payoffs are in quote units; another collateral would need an FX rate we do not have.
        raise ApplicationError(f"Collateral must be the pair's quote currency ({spec.pair.quote}).",
                               code="contract_collateral_not_quote")
    if spec.expiry_date <= require_aware(now).date():
        raise ApplicationError("The expiry date must be after today (UTC).", code="contract_expiry_in_past")
    if spec.tick_size <= 0 or spec.lot_size <= 0:
        raise ApplicationError("Tick and lot sizes must be positive.", code="contract_grid_invalid")
    options = [k for k in spec.kinds if k is not ContractKind.FUTURE]
    if not spec.kinds:
        raise ApplicationError("Choose at least one kind.", code="contract_kind_missing")
    if options and not spec.strikes:
        raise ApplicationError("Calls and puts need at least one strike.", code="contract_strike_missing")
    for strike in spec.strikes if options else ():
        try:
            Terms(kind=options[0], floor=spec.floor_px, cap=spec.cap_px, strike=strike)
        except (TypeError, ValueError) as exc:
            raise ApplicationError(str(exc), code="contract_terms_invalid", extra={"strike": str(strike)}) from exc
        if not _on_grid(strike, spec.tick_size):
            raise ApplicationError(f"Strike {strike} is not on the tick grid {spec.tick_size}.",
                                   code="contract_strike_off_tick", extra={"strike": str(strike)})
    if ContractKind.FUTURE in spec.kinds:
        try:
            Terms(kind=ContractKind.FUTURE, floor=spec.floor_px, cap=spec.cap_px)
        except (TypeError, ValueError) as exc:
            raise ApplicationError(str(exc), code="contract_terms_invalid") from exc


@transaction.atomic
def contract_series_create(*, spec: SeriesSpec, now: datetime) -> list[Contract]:
    """List every (kind, strike) of the series that does not exist yet; return the new contracts.

    Idempotent: contracts already listed with the same terms are skipped. All-or-nothing.
    """
    _series_validate(spec, now)
    wanted: list[tuple[ContractKind, Decimal | None]] = [
        (kind, strike) for kind in spec.kinds
        for strike in ((None,) if kind is ContractKind.FUTURE else sorted(set(spec.strikes)))
    ]
    created = []
    for kind, strike in wanted:
        exists = Contract.objects.filter(pair=spec.pair, expiry_date=spec.expiry_date, kind=kind.value,
                                         strike_px=strike).exists()
        if exists:
            continue
        contract = Contract(
            symbol=Contract.symbol_for(pair=spec.pair, expiry_date=spec.expiry_date, kind=kind.value, strike_px=strike),
            pair=spec.pair, collateral=spec.collateral, kind=kind.value, strike_px=strike,
            expiry_date=spec.expiry_date, floor_px=spec.floor_px, cap_px=spec.cap_px,
            tick_size=spec.tick_size, lot_size=spec.lot_size, state=ContractState.LISTED,
        )
        try:
            with transaction.atomic():
                contract.save()
        except IntegrityError as exc:
            # A concurrent listing of the same terms, or a symbol clash.
            raise Conflict(f"Contract {contract.symbol} could not be listed: {exc}", code="contract_conflict") from exc
        created.append(contract)
    return created



# Lifecycle: listed -> halted (00:00 UTC on the expiry day) -> expired (12:00) -> settled (payoffs booked).

def contracts_halt(*, now: datetime) -> list[Contract]:
    """Halt every listed contract whose trading has ended and cancel its open orders, releasing their
    order value (an order held by a running auction is cancelled when that auction is applied).
    Idempotent: a halted contract is not halted again."""
    from ccp.orders.services import order_cancel

    now = require_aware(now)
    halted = []
    for contract in Contract.objects.filter(state=ContractState.LISTED, expiry_date__lte=now.date()).order_by("id"):
        with transaction.atomic():
            # The book lock before the contract row, in the order an auction's apply takes them
            # (book, then the contract's book sequence): the other order could deadlock with it.
            book_lock(contract.pair_id, exclusive=False)
            contract = Contract.objects.select_for_update().get(pk=contract.pk)
            if contract.state != ContractState.LISTED or now < contract.trading_ends_at:
                continue
            contract.state = ContractState.HALTED
            contract.save(update_fields=["state"])
            for order in contract.orders.filter(state__in=OPEN_STATES).select_related("client").order_by("id"):
                order_cancel(client=order.client, order_id=order.pk, now=now, reason="contract_halted")
            halted.append(contract)
    return halted


@transaction.atomic
def contracts_expire(*, now: datetime) -> int:
    """Halted contracts past 12:00 UTC of their expiry day become expired. Idempotent."""
    now = require_aware(now)
    due = [c.pk for c in Contract.objects.filter(state=ContractState.HALTED, expiry_date__lte=now.date())
           if now >= c.expires_at]
    return Contract.objects.filter(pk__in=due, state=ContractState.HALTED).update(state=ContractState.EXPIRED)


def expiry_key(pair: Pair, expiry_date: date) -> str:
    return f"expiry-{pair.base.symbol}-{pair.quote.symbol}-{expiry_date.isoformat()}"


@transaction.atomic
def expiry_settle(*, pair: Pair, expiry_date: date, settlement_px: Decimal, now: datetime) -> list[CashMovement]:
    """Book the payoffs of every position in the pair's contracts of that expiry at the settlement
    price: one cash movement per position (payoff, position closed to zero; they sum to zero across
    clients), the (expiry, pair) lockups released, fund locks updated, contracts settled.

    Locks the expired contracts, then positions, lockups and fund locks in id order. Idempotent:
    contracts already settled are skipped, and the movements' origin key is unique."""
    from ccp.accounts.serializers import BalanceSerializer
    from ccp.accounts.services import fund_locks_adjust
    from ccp.risk.models import Lockup, Position

    now = require_aware(now)
    contracts = {c.pk: c for c in Contract.objects.select_for_update().filter(
        pair=pair, expiry_date=expiry_date, state=ContractState.EXPIRED).order_by("id")}
    if not contracts:
        return []
    key = expiry_key(pair, expiry_date)
    positions = list(Position.objects.select_for_update().filter(contract_id__in=contracts).exclude(quantity=0)
                     .order_by("id"))
    movements, settle = [], defaultdict(Decimal)
    per_unit = {pk: payoff_per_unit(contract.terms, settlement_px) for pk, contract in contracts.items()}
    for position in positions:
        contract = contracts[position.contract_id]
        amount = position.quantity * per_unit[position.contract_id]
        if amount != quantize(amount):
            raise ValueError(f"payoff {amount} of {contract} needs more than 18 decimal places")
        movements.append(CashMovement(client_id=position.client_id, currency_id=contract.collateral_id,
                                      amount=amount, contract=contract, position_delta=-position.quantity,
                                      origin=CashMovementOrigin.EXPIRY, origin_ref=key, created_at=now))
        settle[(position.client_id, contract.collateral_id)] += amount
        position.quantity, position.updated_at = Decimal(0), now
    if sum((m.amount for m in movements), Decimal(0)) != 0:
        raise ValueError(f"payoffs of {key} do not sum to zero: positions are not balanced")
    # COPY-based: Django's bulk_update builds a CASE per row, slow for an expiry's thousands of rows.
    bulk_update_rows(Position, positions, ["quantity", "updated_at"])
    CashMovement.objects.bulk_create([m for m in movements if m.amount or m.position_delta], batch_size=5000)
    lockups = list(Lockup.objects.select_for_update().filter(pair=pair, expiry_date=expiry_date).order_by("id"))
    released = defaultdict(Decimal)
    for lockup in lockups:
        released[(lockup.client_id, lockup.currency_id)] -= lockup.amount
        lockup.amount, lockup.updated_at = Decimal(0), now
    bulk_update_rows(Lockup, lockups, ["amount", "updated_at"])
    fund_locks = fund_locks_adjust(settle_value=settle, order_value={}, lockup_value=released, now=now)
    Contract.objects.filter(pk__in=contracts).update(state=ContractState.SETTLED)
    payoffs = defaultdict(list)
    for m in movements:
        payoffs[m.client_id].append({"contract": contracts[m.contract_id].symbol, "amount": money_str(m.amount),
                                     "position_closed": money_str(-m.position_delta)})
    # One list serializer for every balance: a serializer per fund lock builds its fields each time.
    balances = BalanceSerializer(list(fund_locks.values()), many=True).data
    for (client_id, _), balance in zip(fund_locks, balances, strict=True):
        stream_publish(client_group(client_id), {"type": "expiry", "expiry": key, "settlement_price":
                                                 money_str(settlement_px), "payoffs": payoffs[client_id],
                                                 "balance": balance})
    return movements
