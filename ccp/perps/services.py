"""Perpetuals: listing one, its mark price at every price update, its variation and funding at each
funding time, and the liquidation of positions below their requirement (``ccp.perps.liquidation``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from itertools import islice

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from ccp.accounts.models import Client, FundLock
from ccp.accounts.services import balances_publish, fund_locks_adjust
from ccp.book.versions import books_touched
from ccp.clearing.booking import trades_clear
from ccp.clearing.models import Venue
from ccp.clearing.services import Execution
from ccp.clock import iso_utc, require_aware
from ccp.contracts.models import Contract, ContractState, Currency, Pair, TradingMode
from ccp.contracts.payoffs import ContractKind, Terms
from ccp.db import bulk_insert_rows
from ccp.errors import ApplicationError, Conflict
from ccp.locks import contract_lock, contracts_lock, fund_locks_lock, perp_position_rows_lock
from ccp.money import ZERO, money_str, quantize
from ccp.orders.models import Order, OrderStateHistory
from ccp.orders.selectors import books_bbo
from ccp.orders.services import OrderRequest, order_submit
from ccp.orders.states import OPEN_STATES, OrderState
from ccp.perps.accounting import CROSS, ISOLATED, PerpPosition, funding_book, variation_book
from ccp.perps.booking import position_triggers
from ccp.perps.cross import cross_accounts_below
from ccp.perps.fund import insurance_fund_client, insurance_fund_locks
from ccp.perps.liquidation import (
    Candidate,
    Counterparty,
    adl_fills,
    adl_ranking,
    liquidation_size,
    takeover_size,
)
from ccp.perps.live import isolated_crossed, positions_read
from ccp.perps.margin import (
    LONG,
    Tier,
    bankruptcy_price,
    basis_damped,
    funding_payments,
    funding_rate,
    liquidatable,
    liquidation_price,
    mark_price,
    premium,
    protection_price,
    tier_of,
    tiers_check,
    to_tick,
)
from ccp.perps.models import Funding, Liquidation, LiquidationStep, MarkPrice, Perpetual
from ccp.perps.selectors import mark_fresh, open_estimate
from ccp.perps.watch import isolated_called, margin_calls_send
from ccp.prices.selectors import index_by_pair
from ccp.risk.models import Position
from ccp.settlement.models import CashMovement, CashMovementOrigin
from ccp.streams import client_stream_publish_many
from ccp.system.models import AlertKind
from ccp.system.services import alert_raise, alert_resolve


@transaction.atomic
def perpetual_list(*, pair: Pair, collateral: Currency, tick_size: Decimal, lot_size: Decimal, floor_px: Decimal,
                   cap_px: Decimal, tiers: Sequence[Tier], liquidation_fee_rate: Decimal, funding_cap: Decimal,
                   now: datetime) -> Contract:
    """List the pair's perpetual (``<BASE>-<QUOTE>-PERP``), trading continuously from now: its price band
    [floor, cap], grid, maintenance tiers (``ccp.perps.margin.tiers_check``: sizes and rates growing,
    leverage falling, none opening liquidatable), liquidation fee and funding cap. One per pair
    (``perpetual_exists``)."""
    require_aware(now)
    if collateral != pair.quote:
        raise ApplicationError(f"Collateral must be the pair's quote currency ({pair.quote}).",
                               code="contract_collateral_not_quote")
    if tick_size <= 0 or lot_size <= 0:
        raise ApplicationError("Tick and lot sizes must be positive.", code="contract_grid_invalid")
    try:
        Terms(kind=ContractKind.PERPETUAL, floor=floor_px, cap=cap_px)
        tiers_check(tiers, fee_rate=liquidation_fee_rate)
    except (TypeError, ValueError) as exc:
        raise ApplicationError(str(exc), code="contract_terms_invalid") from exc
    if not (0 <= liquidation_fee_rate < Decimal("0.1") and 0 <= funding_cap < Decimal("0.1")):
        raise ApplicationError("Fee and funding cap rates must lie in [0, 0.1).", code="contract_terms_invalid")
    symbol = Contract.symbol_for(pair=pair, expiry_date=None, kind=ContractKind.PERPETUAL, strike_px=None)
    try:
        with transaction.atomic():
            contract = Contract.objects.create(
                symbol=symbol, pair=pair, collateral=collateral, kind=ContractKind.PERPETUAL, expiry_date=None,
                floor_px=floor_px, cap_px=cap_px, tick_size=tick_size, lot_size=lot_size,
                trading_mode=TradingMode.CONTINUOUS)
    except IntegrityError:
        raise Conflict(f"{symbol} is listed already.", code="perpetual_exists", extra={"contract": symbol}) from None
    Perpetual.objects.create(
        contract=contract, liquidation_fee_rate=liquidation_fee_rate, funding_cap=funding_cap,
        tiers=[{k: (None if v is None else money_str(v)) for k, v in asdict(tier).items()} for tier in tiers])
    return contract


@transaction.atomic
def perpetual_marks_update(*, now: datetime) -> list[MarkPrice]:
    """Every listed perpetual's mark at ``now``: the pair's index (median of fresh venue prices,
    ``ccp.prices.selectors.index_prices``), the basis damped towards the book's mid
    (``ccp.perps.margin.basis_damped``), the mark on the tick grid; one ``MarkPrice`` row each. Without a
    fresh index the perpetual has no mark (``mark_px`` empty): nothing opens or liquidates on it until
    one comes (the stale-price alert of the pair is raised by the price loop). Locks the perpetuals'
    contract rows (``ccp.locks`` 3). Safe to run twice: a second run at the same ``now`` stores nothing."""
    now = require_aware(now)
    contracts = contracts_lock(Contract.objects.filter(kind=ContractKind.PERPETUAL, state=ContractState.LISTED))
    if not contracts:
        return []
    perpetuals = Perpetual.objects.in_bulk(list(contracts))
    index = index_by_pair(now=now)
    bbo = books_bbo(contract_ids=list(contracts))
    stored = []
    for contract_id, contract in contracts.items():
        perpetual = perpetuals[contract_id]
        if perpetual.marked_at is not None and perpetual.marked_at >= now:
            continue  # this update (or a later one) is in already
        index_px = index.get(contract.pair_id)
        perpetual.marked_at = now
        if index_px is None:
            perpetual.index_px = perpetual.mark_px = None
        else:
            book = bbo[contract_id]
            perpetual.basis = basis_damped(previous=perpetual.basis, index=index_px, best_bid=book["bid"],
                                           best_ask=book["ask"], alpha=perpetual.basis_alpha,
                                           bound=perpetual.basis_bound)
            perpetual.index_px = index_px
            # At least one tick: an index below half a tick would round the mark to zero.
            perpetual.mark_px = max(mark_price(index=index_px, basis=perpetual.basis, tick=contract.tick_size),
                                    contract.tick_size)
            stored.append(MarkPrice(contract_id=contract_id, at=now, index_px=index_px, basis=perpetual.basis,
                                    mark_px=perpetual.mark_px))
        perpetual.save(update_fields=["index_px", "basis", "mark_px", "marked_at"])
    MarkPrice.objects.bulk_create(stored)
    return stored


def funding_time(now: datetime) -> datetime:
    """The latest funding time at or before ``now``: every CCP_FUNDING_INTERVAL_HOURS from 00:00 UTC."""
    hours = settings.CCP_FUNDING_INTERVAL_HOURS
    return require_aware(now).replace(hour=now.hour - now.hour % hours, minute=0, second=0, microsecond=0)


def perpetuals_fund(*, now: datetime) -> list[str]:
    """Settle every listed perpetual whose latest funding time has not been settled yet
    (``perpetual_fund``); one transaction each. Returns the symbols settled."""
    at = funding_time(now)
    due = Perpetual.objects.filter(contract__state=ContractState.LISTED).filter(
        Q(funded_at__isnull=True) | Q(funded_at__lt=at)).values_list("contract_id", flat=True)
    return [symbol for contract_id in sorted(due) if (symbol := perpetual_fund(contract_id=contract_id, at=at,
                                                                                now=now))]


@transaction.atomic
def perpetual_fund(*, contract_id: int, at: datetime, now: datetime) -> str | None:
    """At funding time ``at``, settle every open position of the perpetual to its mark ``M`` and pay its
    funding (``ccp.perps.accounting``): variation ``q x (M - R)`` (then ``R = M``) and funding at the rate of
    the interval's mean premium, capped (``ccp.perps.margin.funding_rate``; longs pay shorts when positive).
    Each is a cash movement (origins ``variation`` and ``funding``, ref ``<symbol>@<at>``) summing to zero:
    payers round up, receivers down, and the rounding residue goes to the largest receiver. An isolated
    position's margin takes its funding; the fund locks' margin values move with what the positions hold.
    Without a fresh mark nothing is settled and the next run tries again (returns None). Locks the
    contract (3), the fund locks (5), the positions (6). Idempotent: a funding time settled is not again."""
    require_aware(now)
    contract = contract_lock(contract_id)
    perpetual = Perpetual.objects.get(contract=contract)
    if perpetual.funded_at is not None and perpetual.funded_at >= at:
        return None
    mark = mark_fresh(perpetual, now=now)
    if mark is None:
        return None
    ref = f"{contract.symbol}@{at.isoformat()}"
    start = at - timedelta(hours=settings.CCP_FUNDING_INTERVAL_HOURS)
    premiums = [premium(mark=m.mark_px, index=m.index_px) for m in MarkPrice.objects.filter(
        contract=contract, at__gt=start, at__lte=at)]
    rate = funding_rate(premiums=premiums, cap=perpetual.funding_cap)
    client_ids = set(Position.objects.filter(contract=contract).exclude(quantity=0).values_list("client_id", flat=True))
    settle_px = perpetual.settle_px
    rows = perp_position_rows_lock(client_ids, [contract_id]) if client_ids and settle_px is not None else []
    positions = {c: PerpPosition(quantity=q, cost=cost, margin=margin, mode=mode, realised_pnl=realised)
                 for c, _, q, cost, realised, mode, margin in rows if q}
    payments, residue = funding_payments(positions={c: p.quantity for c, p in positions.items()}, mark=mark,
                                         rate=rate)
    if residue:  # to the largest receiver: the payments sum to exactly zero
        # (a receiver whose share rounded down to 0 is still one: positions sum to zero, so one exists)
        largest = max((c for c, amount in payments.items() if amount >= 0), key=lambda c: (payments[c], -c))
        payments[largest] += residue
    movements, settle, held, changed = [], defaultdict(Decimal), defaultdict(Decimal), []
    for client_id, position in sorted(positions.items()):
        key = (client_id, contract.collateral_id)
        variation = variation_book(position, settle_px=settle_px, mark=mark)
        funded = funding_book(position, payment=payments.get(client_id, ZERO))
        for origin, amount in ((CashMovementOrigin.VARIATION, variation.cash), (CashMovementOrigin.FUNDING,
                                                                                 funded.cash)):
            if amount:
                movements.append(CashMovement(client_id=client_id, currency_id=contract.collateral_id,
                                              contract=contract, amount=amount, origin=origin, origin_ref=ref,
                                              created_at=now))
                settle[key] += amount
        held[key] += variation.held_change + funded.held_change
        if funded.position.margin != position.margin:
            changed.append((client_id, funded.position))
    CashMovement.objects.bulk_create(movements)
    Funding.objects.create(contract=contract, at=at, rate=rate, mark_px=mark, samples=len(premiums),
                           paid=sum((-amount for amount in payments.values() if amount < 0), ZERO), settled_at=now)
    for client_id, funded_position in changed:  # an isolated position's margin took its funding
        Position.objects.filter(client_id=client_id, contract=contract).update(
            margin=funded_position.margin, **position_triggers(funded_position, perpetual, contract), updated_at=now)
    perpetual.settle_px = mark if positions else perpetual.settle_px
    perpetual.funded_at = at
    perpetual.save(update_fields=["settle_px", "funded_at"])
    if settle or held:
        balances_publish(fund_locks_adjust(settle_value=dict(settle), order_value={}, lockup_value={},
                                           margin_value=dict(held), now=now).values())
    return contract.symbol


def position_open(*, client, perpetual: Perpetual, side: str, margin: Decimal, leverage: Decimal,
                  slippage_bps: int, client_order_id: str, now: datetime):
    """Open (or add to) an isolated position the way the seed's traders do: an immediate-or-cancel market
    order for ``margin x leverage / mark`` (down to the lot), protected at ``mark x (1 +/- slippage)``, with
    the refusals of ``ccp.perps.selectors.open_estimate`` and 409 ``nothing_fillable`` when the book holds
    nothing within the slippage now. Returns ``order_submit``'s (order, created): the matcher fills it (or
    rejects it, e.g. ``insufficient_collateral``). Idempotent on ``client_order_id`` as order entry."""
    existing = client.orders.filter(client_order_id=client_order_id).select_related("contract").first()
    if existing is not None:  # the same open again: order_submit answers with it (or client_order_id_reused)
        request = OrderRequest(client_order_id=client_order_id, contract=perpetual.contract, side=existing.side,
                               kind=existing.kind, price=existing.price, quantity=existing.quantity,
                               time_in_force=existing.time_in_force, leverage=existing.leverage,
                               margin_mode=existing.margin_mode)
        return order_submit(client=client, request=request, now=now)
    estimate = open_estimate(perpetual=perpetual, side=side, margin=margin, leverage=leverage,
                             slippage_bps=slippage_bps, now=now)
    if not estimate.filled_quantity:
        raise Conflict(f"Nothing on the book of {perpetual.contract.symbol} within {slippage_bps} basis points of "
                       f"the mark ({estimate.mark_price}).", code="nothing_fillable",
                       extra={"protection_price": money_str(estimate.protection_price)})
    return order_submit(client=client, now=now, request=OrderRequest(
        client_order_id=client_order_id, contract=perpetual.contract, side="buy" if side == LONG else "sell",
        kind="market", price=estimate.protection_price, quantity=estimate.quantity, time_in_force="ioc",
        leverage=leverage, margin_mode="isolated"))


LIQUIDATION_TARGET = Decimal("1.5")  # a partial liquidation restores 1.5x the requirement (ccp.perps.liquidation)


def perpetual_liquidations_run(*, contract_id: int, now: datetime) -> list[Liquidation]:
    """What the tasks call: ``perpetual_liquidations_enter`` in transactions of at most
    CCP_LIQUIDATIONS_PER_CHECK positions each, worst first, until none is left (at most 100 rounds): a crash
    tick's thousands of liquidations never hold the contract's row (and its matcher) for long, and the mark
    stays fresh while they are entered."""
    steps: list[Liquidation] = []
    for _ in range(100):
        entered, more = _liquidations_enter(contract_id=contract_id, now=now,
                                            limit=settings.CCP_LIQUIDATIONS_PER_CHECK)
        steps += entered
        if not more:
            break
    return steps


def perpetual_liquidations_enter(*, contract_id: int, now: datetime, limit: int | None = None) -> list[Liquidation]:
    """One check (``_liquidations_enter``): every position found, or the ``limit`` worst."""
    return _liquidations_enter(contract_id=contract_id, now=now, limit=limit)[0]


@transaction.atomic
def _liquidations_enter(*, contract_id: int, now: datetime, limit: int | None) -> tuple[list[Liquidation], bool]:
    """Liquidate the perpetual's positions at or below their maintenance requirement plus closing fee at the
    current mark: the finders list them (``isolated_taken``: the process's live index, ``ccp.perps.live``, then
    each position taken read and checked exactly; ``cross_candidates``), then each goes down the waterfall
    (``candidate_liquidate``): a reduce-only order on the book, or what the book cannot take taken over by the
    insurance fund at the bankruptcy price as far as it can afford, the rest auto-deleveraged. Then the
    fund's own position is unwound on the book (``insurance_fund_unwind``). Nothing happens without a mark
    from a fresh index. Each step is a ``Liquidation`` row, pushed to its trader (and to each deleveraged
    trader) as a ``liquidation`` event after commit. Locks the contract (3); a takeover and ADL lock fund
    locks (5) and positions (6) through ``trades_clear``; orders go through ``order_submit``. Safe to run
    twice: an order's client_order_id names the position and the mark's time, and a position taken over
    is flat. With ``limit``: the positions whose liquidation order is still open are left aside, the others
    taken worst first (lowest equity / requirement), at most ``limit``; also returns whether more are left."""
    contract = contract_lock(contract_id)
    perpetual = Perpetual.objects.get(contract=contract)
    mark = mark_fresh(perpetual, now=now)
    if mark is None:
        return [], False
    fund = insurance_fund_client(now=now)
    pending = set() if limit is None else set(Liquidation.objects.filter(
        contract=contract, order__state__in=OPEN_STATES).values_list("client_id", flat=True))
    isolated, more = isolated_taken(contract=contract, perpetual=perpetual, mark=mark, exclude={fund.pk, *pending},
                                    limit=limit)
    cross, cross_called = cross_candidates(contract=contract, perpetual=perpetual, mark=mark, exclude={fund.pk},
                                           now=now)
    if limit is None:
        candidates = sorted(isolated, key=lambda c: c.position_id) + cross
    else:
        candidates = sorted(isolated + [c for c in cross if c.client_id not in pending],
                            key=lambda c: (c.equity / c.requirement, c.position_id))
        candidates, more = candidates[:limit], more or len(candidates) > limit
    steps, events = [], defaultdict(list)
    for candidate in candidates:
        taken = candidate_liquidate(candidate, contract=contract, perpetual=perpetual, mark=mark, fund=fund,
                                    events=events, now=now)
        events[candidate.client_id] += [liquidation_event(step) for step in taken]
        steps += taken
    steps += insurance_fund_unwind(contract=contract, perpetual=perpetual, mark=mark, fund=fund, events=events,
                                   now=now)
    client_stream_publish_many([(client_id, {"type": "liquidation", "contract": contract.symbol, "events": found})
                                for client_id, found in sorted(events.items()) if found])
    margin_calls_send(positions=cross_called, symbol=contract.symbol, mark=mark, now=now)  # isolated: each minute
    insurance_fund_alert(fund=fund, currency=contract.collateral, now=now)
    return steps, more


def insurance_fund_alert(*, fund: Client, currency: Currency, now: datetime) -> None:
    """An operator alert while the insurance fund's available collateral in ``currency`` is below zero: it paid
    a loss beyond everything a trader had (``ccp.perps.booking.shortfall_lines``) or lost more unwinding than it
    held, and the clearing house carries the difference until operators deposit to the fund's address."""
    fund_lock = FundLock.objects.filter(client=fund, currency=currency).first()
    key = f"insurance_fund:{currency.symbol}"
    if fund_lock is not None and fund_lock.available < 0:
        alert_raise(key=key, kind=AlertKind.INSURANCE_FUND, now=now, message=(
            f"The insurance fund's {currency.symbol} is {money_str(fund_lock.available)} available: deposit to "
            f"{fund.checksum_address} to refill it."))
    else:
        alert_resolve(key=key, now=now)


def _candidate(*, contract: Contract, perpetual: Perpetual, mark: Decimal, client_id: int, position_id: int,
               quantity: Decimal, entry_px: Decimal, margin: Decimal, mode: str) -> Candidate:
    """A position at or below its requirement at ``mark``, backed by ``margin``: the size a partial liquidation
    closes (``liquidation_size``) and its bankruptcy price within the price band."""
    rate, fee = tier_of(perpetual.tier_list, quantity).rate, perpetual.liquidation_fee_rate
    equity = margin + quantity * (mark - entry_px)
    worst = bankruptcy_price(quantity=quantity, entry_px=entry_px, margin=margin, tick=contract.tick_size)
    return Candidate(
        client_id=client_id, contract_id=contract.pk, position_id=position_id, quantity=quantity, entry_px=entry_px,
        margin=margin, equity=equity, requirement=(rate + fee) * abs(quantity) * mark,
        size=liquidation_size(quantity=quantity, equity=equity, mark=mark, rate=rate, fee_rate=fee,
                              lot=contract.lot_size, target=LIQUIDATION_TARGET),
        bankruptcy_px=min(max(worst, contract.price_min), contract.price_max), mode=mode)


def isolated_candidates(*, contract: Contract, perpetual: Perpetual, mark: Decimal,
                        exclude: Collection[int] = ()) -> list[Candidate]:
    """Every isolated position of the perpetual at or below its requirement plus closing fee at ``mark``, but
    those of ``exclude`` (client ids: the insurance fund), by position id (``isolated_taken`` without a limit).
    Reads, locks nothing."""
    return sorted(isolated_taken(contract=contract, perpetual=perpetual, mark=mark, exclude=exclude, limit=None)[0],
                  key=lambda c: c.position_id)


ROWS_PER_READ = 5000  # positions read at once when every crossed one is taken


def isolated_taken(*, contract: Contract, perpetual: Perpetual, mark: Decimal, exclude: Collection[int],
                   limit: int | None) -> tuple[list[Candidate], bool]:
    """Up to ``limit`` (None: all) isolated positions of the perpetual at or below their requirement plus closing
    fee at ``mark``, worst first, but those of the clients ``exclude``; and whether crossed positions are left.
    They are identified in this process's live index (``ccp.perps.live.isolated_crossed``: synced from the
    positions written since its last use, then the crossed ones cut out, worst first), then only those taken
    are read (``positions_read``) and checked exactly (``ccp.perps.margin.liquidatable``): the row decides,
    whatever the index held. The service calls it holding the contract's row, which every writer of the
    perpetual's positions holds: the rows it reads cannot change before it commits. Locks nothing itself."""
    crossing = isolated_crossed(contract=contract, perpetual=perpetual, mark=mark)
    excluded = set(exclude)
    skip = set(Position.objects.filter(contract=contract, client_id__in=excluded).values_list("id", flat=True)
               ) if excluded and crossing else set()
    keys = (key for key in crossing if key not in skip)
    tiers, fee, found = perpetual.tier_list, perpetual.liquidation_fee_rate, []
    while limit is None or len(found) < limit:
        chunk = list(islice(keys, ROWS_PER_READ if limit is None else limit - len(found)))
        if not chunk:
            return found, False
        rows = {row.position_id: row for row in positions_read(chunk)}
        for key in chunk:
            row = rows.get(key)
            if row is None or row.client_id in excluded:
                continue
            q, entry = row.quantity, row.cost / row.quantity
            if liquidatable(quantity=q, entry_px=entry, margin=row.margin, mark=mark, rate=tier_of(tiers, q).rate,
                            fee_rate=fee):
                found.append(_candidate(contract=contract, perpetual=perpetual, mark=mark, client_id=row.client_id,
                                        position_id=key, quantity=q, entry_px=entry, margin=row.margin,
                                        mode=ISOLATED))
    return found, next(keys, None) is not None


def perpetuals_margin_call(*, now: datetime) -> int:
    """Beat (with funding, every minute): each listed perpetual's isolated positions past their margin call
    price at its fresh mark get a ``margin_call`` event (``ccp.perps.watch``), at most every
    CCP_MARGIN_CALL_REPEAT_SECONDS each. Cross accounts get theirs at every price update, with their check.
    Returns how many were sent."""
    sent = 0
    for perpetual in Perpetual.objects.filter(contract__state=ContractState.LISTED).select_related("contract"):
        mark = mark_fresh(perpetual, now=now)
        if mark is not None:
            called = isolated_called(contract_id=perpetual.contract_id, mark=mark, now=now)
            sent += len(margin_calls_send(positions=called, symbol=perpetual.contract.symbol, mark=mark, now=now))
    return sent


def cross_candidates(*, contract: Contract, perpetual: Perpetual, mark: Decimal, exclude: Collection[int],
                     now: datetime) -> tuple[list[Candidate], list[Position]]:
    """The cross accounts holding the perpetual that their marks leave at or below their requirement
    (``ccp.perps.cross.cross_accounts_below``), each as a candidate for its position on this perpetual backed
    by the rest of the account (``leg_margin``), and the positions of the accounts past their margin call
    only (with the liquidation price the account gives them now). Accounts with any leg on a stale mark are
    left alone."""
    fresh_since = now - settings.CCP_SPOT_STALE_AFTER
    reached = cross_accounts_below(contract_id=contract.pk, currency_id=contract.collateral_id,
                                   fresh_since=fresh_since, exclude=exclude, call_ratio=settings.CCP_MARGIN_CALL_RATIO)
    found = [_candidate(contract=contract, perpetual=perpetual, mark=mark, client_id=r.client_id,
                        position_id=r.position_id, quantity=r.quantity, entry_px=r.entry_px, margin=r.margin,
                        mode=CROSS) for r in reached if r.below]
    calls = {r.position_id: r for r in reached if not r.below}
    called = list(Position.objects.filter(pk__in=list(calls)).order_by("id"))
    for position in called:  # shown in the call: where the account liquidates this position now
        r = calls[position.pk]
        position.liquidation_px = liquidation_price(
            quantity=r.quantity, entry_px=r.entry_px, margin=r.margin,
            rate=tier_of(perpetual.tier_list, r.quantity).rate, fee_rate=perpetual.liquidation_fee_rate,
            tick=contract.tick_size)
    return found, called


def candidate_liquidate(candidate: Candidate, *, contract: Contract, perpetual: Perpetual, mark: Decimal,
                        fund: Client, events: dict[int, list], now: datetime) -> list[Liquidation]:
    """One step of the waterfall for ``candidate`` (in the caller's transaction, the contract locked):
    - a liquidation order of the position still open: nothing (the matcher has it);
    - equity above zero and no order of its own left a leftover the book could not take: a reduce-only
      immediate-or-cancel market order for ``size`` protected at the bankruptcy price (``order`` step);
    - otherwise (equity at or below zero: the mark at or beyond the bankruptcy price; or the last step's
      order ended with a leftover and left the position as it is now, still liquidatable): the whole
      position is closed at its bankruptcy price, taken over by the insurance fund as far as its available
      collateral covers the taken part's initial margin at the tier's highest leverage and its loss at the
      mark (``takeover_size``), the rest against the most profitable opposite positions in ADL order
      (``adl``). What neither covers stays open for the next check.
    Returns the steps; the private stream events of the trades (fills, orders, positions, balances, and each
    deleveraged trader's ``liquidation`` event) go into ``events`` (client id -> events)."""
    last = (Liquidation.objects.filter(contract=contract, client_id=candidate.client_id).select_related("order")
            .order_by("-id").first())
    if last is not None and last.order.state in OPEN_STATES:
        return []
    filled = last.order.filled_quantity if last is not None else ZERO
    leftover = (last is not None and last.kind == LiquidationStep.ORDER and filled < last.order.quantity
                and last.quantity - (filled if last.quantity > 0 else -filled) == candidate.quantity)
    if candidate.equity > 0 and not leftover:
        return [_liquidation_order_enter(candidate, contract=contract, perpetual=perpetual, mark=mark,
                                         attempt=last.pk if last is not None else 0, now=now)]
    return _bankrupt_close(candidate, contract=contract, perpetual=perpetual, mark=mark, fund=fund,
                           attempt=last.pk if last is not None else 0, events=events, now=now)


def _step(candidate: Candidate, *, contract: Contract, kind: str, order: Order, size: Decimal, mark: Decimal,
          now: datetime, counterparty_id: int | None = None) -> Liquidation:
    return Liquidation(contract=contract, client_id=candidate.client_id, kind=kind, order=order,
                       counterparty_id=counterparty_id, mark_px=mark, quantity=candidate.quantity,
                       equity=quantize(candidate.equity), requirement=quantize(candidate.requirement, ROUND_CEILING),
                       size=size, bankruptcy_px=candidate.bankruptcy_px, at=now)


def _liquidation_order_enter(candidate: Candidate, *, contract: Contract, perpetual: Perpetual, mark: Decimal,
                             attempt: int, now: datetime) -> Liquidation:
    """The reduce-only order step; its client_order_id names the position and the step before it, so the same
    check twice enters one order, and a position still liquidatable after its order filled gets the next."""
    client = Client.objects.get(pk=candidate.client_id)
    order, _ = order_submit(client=client, now=now, request=OrderRequest(
        client_order_id=f"liq-{candidate.position_id}-{attempt}", contract=contract,
        side="sell" if candidate.quantity > 0 else "buy", kind="market", price=candidate.bankruptcy_px,
        quantity=candidate.size, time_in_force="ioc", reduce_only=True, leverage=Decimal(1),
        margin_mode=candidate.mode))
    step = Liquidation.objects.filter(order=order).first()
    if step is None:
        step = _step(candidate, contract=contract, kind=LiquidationStep.ORDER, order=order, size=candidate.size,
                     mark=mark, now=now)
        step.save()
    return step


def _bankrupt_close(candidate: Candidate, *, contract: Contract, perpetual: Perpetual, mark: Decimal, fund: Client,
                    attempt: int, events: dict[int, list], now: datetime) -> list[Liquidation]:
    """Close the whole candidate at its bankruptcy price: the insurance fund's takeover, then ADL."""
    price, n, currency_id = candidate.bankruptcy_px, abs(candidate.quantity), contract.collateral_id
    insurance_fund_locks(currency_ids=[currency_id], now=now)  # created on first use, then locked
    locked = fund_locks_lock(keys={(candidate.client_id, currency_id), (fund.pk, currency_id)})
    leverage = tier_of(perpetual.tier_list, candidate.quantity).max_leverage
    taken = ZERO if candidate.client_id == fund.pk else takeover_size(  # the fund run dry: all of it to ADL
        available=locked[(fund.pk, currency_id)].available, quantity=candidate.quantity, bankruptcy_px=price,
        mark=mark, leverage=leverage, lot=contract.lot_size)
    deleveraged = [] if taken == n else adl_fills(adl_ranking(_adl_counterparties(
        contract=contract, candidate=candidate, mark=mark, exclude={fund.pk})), quantity=n - taken)
    closing = "sell" if candidate.quantity > 0 else "buy"
    opposite = "buy" if closing == "sell" else "sell"
    orders: list[Order] = []
    legs: list[tuple[str, Order, Order, Decimal]] = []  # (step kind, the candidate's order, the other, quantity)

    def order(client_id: int, coid: str, side: str, quantity: Decimal, *, reduce_only: bool, leverage: Decimal,
              mode: str) -> Order:
        made = Order(client_id=client_id, contract=contract, client_order_id=coid, side=side, kind="market",
                     price=price, quantity=quantity, time_in_force="ioc", reduce_only=reduce_only, leverage=leverage,
                     margin_mode=mode, state=OrderState.ACCEPTED, created_at=now, updated_at=now)
        orders.append(made)
        return made

    ref = f"liq-{candidate.position_id}-{attempt}"
    if taken:
        legs.append((LiquidationStep.TAKEOVER,
                     order(candidate.client_id, f"{ref}-takeover", closing, taken, reduce_only=True,
                           leverage=Decimal(1), mode=candidate.mode),
                     order(fund.pk, ref, opposite, taken, reduce_only=False, leverage=leverage, mode=CROSS), taken))
    modes = dict(Position.objects.filter(contract=contract, client_id__in=[c for c, _ in deleveraged]).values_list(
        "client_id", "margin_mode"))
    for client_id, quantity in deleveraged:
        legs.append((LiquidationStep.ADL,
                     order(candidate.client_id, f"{ref}-adl-{client_id}", closing, quantity, reduce_only=True,
                           leverage=Decimal(1), mode=candidate.mode),
                     order(client_id, f"adl-{ref}", opposite, quantity, reduce_only=True, leverage=Decimal(1),
                           mode=modes[client_id]), quantity))
    if not legs:
        return []
    Order.objects.bulk_create(orders)
    bulk_insert_rows(OrderStateHistory, [{"order_id": o.pk, "from_state": None, "to_state": OrderState.ACCEPTED,
                                          "reason": "liquidation", "filled_quantity": ZERO, "at": now} for o in orders])
    steps = [_step(candidate, contract=contract, kind=kind, order=mine, size=quantity, mark=mark, now=now,
                   counterparty_id=other.client_id) for kind, mine, other, quantity in legs]
    Liquidation.objects.bulk_create(steps)
    executions = [Execution(contract_id=contract.pk, price=price, quantity=quantity,
                            buy_order_id=(mine if closing == "buy" else other).pk,
                            buy_client_id=(mine if closing == "buy" else other).client_id,
                            sell_order_id=(other if closing == "buy" else mine).pk,
                            sell_client_id=(other if closing == "buy" else mine).client_id)
                  for _, mine, other, quantity in legs]
    cleared = trades_clear(venue=Venue.LIQUIDATION, venue_ref=ref, executions=executions,
                           orders={o.pk: o for o in orders}, contracts={contract.pk: contract}, cancels={}, now=now,
                           envelope={"type": "liquidation", "contract": contract.symbol}, locked=locked,
                           publish=False)
    # Positions changed outside the matcher: its engine in memory (their positions) is stale now (ccp.book)
    books_touched([contract.pk])
    for client_id, message in cleared.messages:
        events[client_id] += message["events"]
    fees = dict(Liquidation.objects.filter(pk__in=[s.pk for s in steps]).values_list("pk", "fee"))
    for step in steps:
        step.fee = fees[step.pk]
    for step, (kind, _, other, _) in zip(steps, legs, strict=True):
        if kind == LiquidationStep.ADL:
            events[other.client_id].append(liquidation_event(step, deleveraged_order=other))
    return steps


def _adl_counterparties(*, contract: Contract, candidate: Candidate, mark: Decimal,
                        exclude: Collection[int]) -> list[Counterparty]:
    """The positions opposite to ``candidate``'s (but the candidate's own client's and ``exclude``'s), as
    ``ccp.perps.liquidation.adl_ranking`` ranks them: profit at the mark, the margin behind each (isolated:
    its margin; cross: its initial margin)."""
    opposite = Q(quantity__lt=0) if candidate.quantity > 0 else Q(quantity__gt=0)
    return [Counterparty(key=p.client_id, quantity=p.quantity, unrealised_pnl=p.quantity * mark - p.cost,
                         margin=p.margin, notional=abs(p.quantity) * mark)
            for p in Position.objects.filter(opposite, contract=contract).exclude(
                client_id__in={candidate.client_id, *exclude}).order_by("id")]


def insurance_fund_unwind(*, contract: Contract, perpetual: Perpetual, mark: Decimal, fund: Client,
                          events: dict[int, list], now: datetime) -> list[Liquidation]:
    """Close what the insurance fund holds of the perpetual (in the caller's transaction, the contract locked):
    - while the fund can pay its loss at the mark: on the book, a reduce-only immediate-or-cancel market order
      for all of it, protected at the mark -/+ CCP_INSURANCE_UNWIND_BPS but never beyond the fund's own
      bankruptcy price (where closing would take its available collateral below zero), within the price band,
      unless one is still open; through ``order_submit``, named after the fund's previous unwind order (the same
      check twice enters one, a leftover after a partial fill gets the next);
    - once the mark is at or beyond that price (the fund has run dry): auto-deleveraged, all of it, against the
      most profitable opposite positions at the fund's bankruptcy price (``_bankrupt_close``: ADL steps).
    The fund's bankruptcy price of a position ``q`` (cost ``c``, margin ``m``) with available ``A``: closing at
    ``p`` moves available by ``m + q * p - c``, so ``p = (c - m - A) / q``, on the tick grid towards the fund.
    Its available is all of the currency's, whatever else it holds (one perpetual per currency is the rule;
    several share it)."""
    position = Position.objects.filter(client=fund, contract=contract).exclude(quantity=0).first()
    last = (Order.objects.filter(client=fund, contract=contract, client_order_id__startswith="unwind-")
            .only("pk", "state").order_by("-id").first())
    if position is None or (last is not None and last.state in OPEN_STATES):
        return []
    q, tick = position.quantity, contract.tick_size
    funds = FundLock.objects.get(client=fund, currency_id=contract.collateral_id).available
    dry = (position.cost - position.margin - funds) / q
    dry = to_tick(dry, tick, ROUND_CEILING if q > 0 else ROUND_FLOOR)
    if (q > 0 and dry >= mark) or (q < 0 and dry <= mark):
        last = Liquidation.objects.filter(contract=contract, client=fund).order_by("-id").first()
        equity = funds + position.margin + q * mark - position.cost
        candidate = Candidate(client_id=fund.pk, contract_id=contract.pk, position_id=position.pk, quantity=q,
                              entry_px=position.cost / q, margin=funds + position.margin, equity=equity,
                              requirement=ZERO, size=abs(q), mode=position.margin_mode or CROSS,
                              bankruptcy_px=min(max(dry, contract.price_min), contract.price_max))
        return _bankrupt_close(candidate, contract=contract, perpetual=perpetual, mark=mark, fund=fund,
                               attempt=last.pk if last is not None else 0, events=events, now=now)
    long = q < 0  # buying back a short
    worst = protection_price(mark=mark, slippage_bps=settings.CCP_INSURANCE_UNWIND_BPS, long=long, tick=tick)
    worst = min(worst, dry) if long else max(worst, dry)
    order_submit(client=fund, now=now, request=OrderRequest(
        client_order_id=f"unwind-{contract.pk}-{last.pk if last is not None else 0}", contract=contract,
        side="buy" if long else "sell", kind="market", price=min(max(worst, contract.price_min), contract.price_max),
        quantity=abs(q), time_in_force="ioc", reduce_only=True, leverage=Decimal(1),
        margin_mode=position.margin_mode or CROSS))
    return []


def liquidation_event(step: Liquidation, *, deleveraged_order: Order | None = None) -> dict:
    """The private stream's ``liquidation`` event of a step: to the liquidated trader (``role`` liquidated),
    or, with ``deleveraged_order``, to the trader an ADL step closed against (``role`` deleveraged, their
    order)."""
    payload = {"id": step.pk, "contract": step.contract.symbol, "step": step.kind,
               "role": "deleveraged" if deleveraged_order is not None else "liquidated",
               "mark_price": money_str(step.mark_px), "size": money_str(step.size),
               "price": money_str(step.bankruptcy_px),
               "order_id": (deleveraged_order or step.order).pk, "at": iso_utc(step.at)}
    if deleveraged_order is None:
        payload.update({"quantity": money_str(step.quantity), "equity": money_str(step.equity),
                        "requirement": money_str(step.requirement), "fee": money_str(step.fee)})
    return {"type": "liquidation", "liquidation": payload}
