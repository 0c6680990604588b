from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

from ccp.accounts.services import balance_events, fund_locks_adjust
from ccp.clearing.booking import cash_book, positions_book
from ccp.clock import require_aware
from ccp.contracts.models import Contract, ContractState, Currency, Pair, TradingMode, TradingModeChange
from ccp.contracts.payoffs import ContractKind, Terms, payoff_per_unit
from ccp.errors import ApplicationError, Conflict, NotFound
from ccp.locks import book_lock, contract_lock, contracts_lock, fund_locks_lock
from ccp.matching.selectors import auction_holds_contracts
from ccp.money import money_str
from ccp.orders.services import orders_cancel_open
from ccp.risk.models import Lockup, Position
from ccp.settlement.models import CashMovement, CashMovementOrigin
from ccp.streams import client_stream_publish_many


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
    if ContractKind.PERPETUAL in spec.kinds:
        raise ApplicationError("A perpetual has no expiry: list it as a perpetual, not in a series.",
                               code="contract_kind_invalid")
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



# Trading mode: an operator moves a listed contract between batch auctions and the continuous book.

@transaction.atomic
def contract_trading_mode_set(*, contract_id: int, mode: str, by: str, reason: str, now: datetime) -> Contract:
    """Move a listed contract to trading ``mode`` (auction or continuous), between sessions: every open
    order of the contract is cancelled (reason ``trading_mode_changed``, order value released, book
    sequence bumped, events after commit) and a ``TradingModeChange`` row records who, why and when.

    Refused (409) while a closed or solved auction of the pair holds open orders of the contract
    (``trading_mode_auction_running``: its apply would fill them after the change) and when the contract
    is not listed or past 00:00 UTC of its expiry day (``contract_not_listed``); a perpetual stays
    continuous (``perpetual_trades_continuously``). Idempotent: a contract
    already in ``mode`` is returned unchanged, with no audit row, whatever its state.

    Locks (``ccp.locks``) the pair's book (exclusive: no auction snapshot or apply runs meanwhile), the
    contract, then its open orders and their fund locks (``orders_cancel_open``)."""
    now = require_aware(now)
    try:
        mode = TradingMode(mode)
    except ValueError:
        raise ApplicationError(f"Trading mode must be one of {', '.join(TradingMode.values)}.",
                               code="trading_mode_invalid") from None
    if not by.strip():
        raise ApplicationError("Say who changes the trading mode.", code="trading_mode_author_missing")
    pair_id = Contract.objects.filter(pk=contract_id).values_list("pair_id", flat=True).first()
    if pair_id is None:
        raise NotFound("No such contract.")
    book_lock(pair_id, exclusive=True)
    contract = contract_lock(contract_id)
    if contract.trading_mode == mode:
        return contract
    if contract.is_perpetual:
        raise Conflict(f"{contract.symbol} is a perpetual: it trades on the continuous book only.",
                       code="perpetual_trades_continuously", extra={"contract": contract.symbol})
    if contract.state != ContractState.LISTED or contract.trading_ended(now):
        raise Conflict(f"{contract.symbol} has stopped trading (from 00:00 UTC of its expiry day): its mode stays.",
                       code="contract_not_listed", extra={"contract": contract.symbol, "state": contract.state})
    if auction_holds_contracts(pair=contract.pair, contract_ids=[contract.pk]):
        raise Conflict(f"An auction of {contract.pair} holds open orders of {contract.symbol}: change its mode "
                       "once that auction is applied (within seconds).",
                       code="trading_mode_auction_running", extra={"contract": contract.symbol})
    change = TradingModeChange(contract=contract, from_mode=contract.trading_mode, to_mode=mode, changed_by=by,
                               reason=reason, at=now)
    contract.trading_mode = mode
    contract.save(update_fields=["trading_mode"])
    cancelled = orders_cancel_open(contract=contract, now=now, reason="trading_mode_changed")
    change.orders_cancelled = len(cancelled)
    change.save()
    return contract


# Lifecycle: listed -> halted (00:00 UTC on the expiry day) -> expired (12:00) -> settled (payoffs booked).

def contracts_halt(*, now: datetime) -> list[Contract]:
    """Halt every listed contract whose trading has ended and cancel its open orders in bulk, releasing
    their order value (an order held by a running auction is cancelled when that auction is applied).

    One transaction per contract; locks (``ccp.locks``) the pair's book (shared: waits for a running
    snapshot or apply), the contract, its open orders, their fund locks. Idempotent: a halted contract
    is not halted again."""
    now = require_aware(now)
    halted = []
    due = Contract.objects.filter(state=ContractState.LISTED, expiry_date__lte=now.date()).order_by("id")
    for contract_id, pair_id in due.values_list("id", "pair_id"):
        with transaction.atomic():
            book_lock(pair_id, exclusive=False)
            contract = contract_lock(contract_id)
            if contract.state != ContractState.LISTED or not contract.trading_ended(now):
                continue
            contract.state = ContractState.HALTED
            contract.save(update_fields=["state"])
            orders_cancel_open(contract=contract, now=now, reason="contract_halted")
            halted.append(contract)
    return halted


@transaction.atomic
def contracts_expire(*, now: datetime) -> int:
    """Halted contracts past 12:00 UTC of their expiry day become expired. Locks them (``ccp.locks``).
    Idempotent."""
    now = require_aware(now)
    halted = contracts_lock(Contract.objects.filter(state=ContractState.HALTED, expiry_date__lte=now.date()))
    due = [pk for pk, contract in halted.items() if now >= contract.expires_at]
    return Contract.objects.filter(pk__in=due).update(state=ContractState.EXPIRED)


def expiry_key(pair: Pair, expiry_date: date) -> str:
    return f"expiry-{pair.base.symbol}-{pair.quote.symbol}-{expiry_date.isoformat()}"


@transaction.atomic
def expiry_settle(*, pair: Pair, expiry_date: date, settlement_px: Decimal, now: datetime
                  ) -> list[CashMovement] | None:
    """Book the payoffs of every position in the pair's contracts of that expiry at the settlement
    price: one cash movement per position (payoff, position closed to zero; they sum to zero across
    clients), the (expiry, pair) lockups released, fund locks updated, contracts settled.

    Returns None, booking nothing, while a closed auction not yet applied holds orders of these
    contracts: its apply cancels them, and the next lifecycle run settles.

    Locks (``ccp.locks``) the pair's book (shared: no snapshot or apply runs meanwhile), the expired
    contracts, then fund locks, positions and lockups. Idempotent: contracts already settled are
    skipped, and the movements' origin key is unique."""
    now = require_aware(now)
    book_lock(pair.pk, exclusive=False)
    contracts = contracts_lock(Contract.objects.filter(pair=pair, expiry_date=expiry_date,
                                                       state=ContractState.EXPIRED))
    if not contracts:
        return []
    if auction_holds_contracts(pair=pair, contract_ids=list(contracts)):
        return None
    key = expiry_key(pair, expiry_date)
    held = list(Position.objects.filter(contract_id__in=contracts).exclude(quantity=0)
                .values_list("client_id", "contract_id", "quantity"))
    locked_up = list(Lockup.objects.filter(pair=pair, expiry_date=expiry_date).exclude(amount=0)
                     .values_list("client_id", "currency_id"))
    # Nothing else writes these positions and lockups while the contracts are locked: read them to
    # know whose fund locks to lock first.
    fund_locks_lock(keys={(c, contracts[k].collateral_id) for c, k, _ in held} | set(locked_up))
    per_unit = {pk: payoff_per_unit(contract.terms, settlement_px) for pk, contract in contracts.items()}
    payoffs = {(client_id, contract_id): quantity * per_unit[contract_id] for client_id, contract_id, quantity in held}
    if sum(payoffs.values(), Decimal(0)) != 0:
        raise ValueError(f"payoffs of {key} do not sum to zero: positions are not balanced")
    # The same machinery as a trade's: one cash movement per position (its payoff, the position
    # closed), positions closed at no entry price, every lockup of the expiry recomputed (released).
    settle = cash_book(origin=CashMovementOrigin.EXPIRY, origin_ref=key, now=now, contracts=contracts,
                       lines={(c, k): (payoffs[(c, k)], -quantity) for c, k, quantity in held})
    released, _ = positions_book(moves={(c, k): [(-quantity, payoffs[(c, k)])] for c, k, quantity in held},
                              contracts=contracts, now=now,
                              portfolios={(client_id, pair.pk, expiry_date) for client_id, _ in locked_up})
    fund_locks = fund_locks_adjust(settle_value=settle, order_value={}, lockup_value=released, now=now)
    Contract.objects.filter(pk__in=contracts).update(state=ContractState.SETTLED)
    lines = defaultdict(list)
    for client_id, contract_id, quantity in held:
        lines[client_id].append({"contract": contracts[contract_id].symbol,
                                 "amount": money_str(payoffs[(client_id, contract_id)]),
                                 "position_closed": money_str(quantity)})
    client_stream_publish_many((client_id, {"type": "expiry", "expiry": key, "settlement_price":
                                            money_str(settlement_px), "payoffs": lines[client_id],
                                            "balance": event["balance"]})
                               for client_id, event in balance_events(fund_locks.values()))
    return list(CashMovement.objects.filter(origin=CashMovementOrigin.EXPIRY, origin_ref=key).order_by("id"))
