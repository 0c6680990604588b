"""The chain side of the clearing house: deposits in, cash movements out, each step idempotent.

- The deposit monitor reads FundLock ``Deposit`` logs only up to (head - confirmations), registers new
  clients, credits their fund locks and advances its edge in the same transaction. A reorg shallower
  than the confirmation depth never reaches it; a deeper one changes the hash of the edge's block,
  which stops the monitor and raises an operator alert instead of crediting anything twice.
- Settlement packs pending cash movements (auctions, expiries: each origin sums to zero) into
  ``settle`` transactions of at most ``batch_max`` movements. A larger origin is split into chunks,
  each balanced by a movement on the house account, in an order that keeps the house balance
  non-negative (its movements sum to zero over the origin). Trackings with the transaction hash are
  written before the transaction is sent; a confirmed receipt (after the confirmation depth) moves
  each amount from settle value into fundlock. A failed transaction is retried under the same batch
  id, which the contract applies once.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ccp.accounts.models import Client, FundLock
from ccp.accounts.services import balances_publish, client_register, fund_locks_adjust
from ccp.clock import require_aware
from ccp.contracts.models import Currency
from ccp.errors import ApplicationError, Conflict
from ccp.locks import fund_locks_lock
from ccp.money import money_str
from ccp.settlement.chain.client import FundLockClient, SignedTx
from ccp.settlement.models import (
    LIVE_TRACKING_STATES,
    BatchState,
    CashMovement,
    CashMovementOrigin,
    CashMovementTracking,
    Deposit,
    OperatorNonce,
    SettlementBatch,
    TrackingState,
    Withdrawal,
    WithdrawalState,
)
from ccp.system.models import AlertKind, Edge
from ccp.system.services import alert_raise, alert_resolve, edge_advance

logger = logging.getLogger(__name__)
DEPOSITS_EDGE = "fundlock-deposits"
ON_CHAIN_ORIGINS = [CashMovementOrigin.AUCTION, CashMovementOrigin.EXPIRY, CashMovementOrigin.WITHDRAWAL]


def token_units(amount: Decimal, decimals: int) -> int:
    """An amount in the token's base units; ValueError if it does not fit the token's precision."""
    units = amount.scaleb(decimals)
    if units != units.to_integral_value():
        raise ValueError(f"{amount} has more than {decimals} decimal places")
    return int(units)


def deposits_monitor(*, chain: FundLockClient, now: datetime, start_block: int = 0) -> int:
    """Credit confirmed Deposit events since the edge; returns how many were new. Safe to run twice."""
    now = require_aware(now)
    edge = Edge.objects.filter(name=DEPOSITS_EDGE).first()
    if edge is not None and edge.block_hash and chain.block_hash(edge.block_number) != edge.block_hash:
        alert_raise(key=f"reorg:{DEPOSITS_EDGE}", kind=AlertKind.CHAIN_REORG, now=now, message=(
            f"Block {edge.block_number} changed after it was confirmed: a reorganisation deeper than "
            f"{settings.CCP_CHAIN_CONFIRMATIONS} blocks. The deposit monitor stopped; check the deposits "
            "credited since then, then move the edge back."))
        return 0
    safe = chain.head() - settings.CCP_CHAIN_CONFIRMATIONS
    start = edge.block_number + 1 if edge is not None else start_block
    tokens = {c.token_address: c for c in Currency.objects.exclude(token_address=None)}
    credited = 0
    while start <= safe:
        end = min(start + settings.CCP_CHAIN_LOG_RANGE - 1, safe)
        logs = chain.deposits(start, end)
        credits: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
        with transaction.atomic():
            for log in logs:
                currency = tokens.get(log.token)
                if currency is None:
                    logger.warning("deposit of an unknown token %s in %s skipped", log.token, log.tx_hash)
                    continue
                client = client_register(address=log.client, now=now)
                amount = Decimal(log.amount).scaleb(-currency.decimals)
                _, created = Deposit.objects.get_or_create(tx_hash=log.tx_hash, log_index=log.log_index, defaults={
                    "client": client, "currency": currency, "amount": amount, "block_number": log.block_number,
                    "block_hash": log.block_hash, "recorded_at": now})
                if created:
                    credits[(client.pk, currency.pk)] += amount
                    credited += 1
            # All at once, the fund locks locked in id order as every writer locks them (crediting in
            # log order could deadlock with an auction's apply).
            FundLock.objects.bulk_create([FundLock(client_id=client_id, currency_id=currency_id, updated_at=now)
                                          for client_id, currency_id in credits], ignore_conflicts=True)
            balances_publish(fund_locks_adjust(settle_value={}, order_value={}, lockup_value={}, fundlock=credits,
                                               now=now).values())
            edge_advance(name=DEPOSITS_EDGE, now=now, block_number=end, block_hash=chain.block_hash(end))
        start = end + 1
    return credited


def _batch_id(movement_ids: list[int]) -> bytes:
    return Web3.keccak(text="ccp-settle:" + ",".join(map(str, sorted(movement_ids))))


def _chunks(movements: list[CashMovement], size: int) -> list[list[CashMovement]]:
    """Split one origin's movements into chunks of size - 1 (room for the house movement), ordered so
    the house receives before it pays: its running balance never goes below zero."""
    chunks = [movements[i:i + size - 1] for i in range(0, len(movements), size - 1)]
    return sorted(chunks, key=lambda chunk: sum((m.amount for m in chunk), Decimal(0)))


def operator_nonce_take(*, address: str, w3: Web3) -> int:
    """The operator's next nonce, taken under its row lock (call inside a transaction). Everything
    that sends from the operator account takes its nonces here, so no two transactions share one."""
    row = OperatorNonce.objects.select_for_update().filter(address=address).first()
    if row is None:
        # First use of the address: start from its count on chain. Two workers starting together
        # both insert; ON CONFLICT keeps the first row and the second waits for it, then for its lock.
        on_chain = w3.eth.get_transaction_count(Web3.to_checksum_address(address))
        OperatorNonce.objects.bulk_create([OperatorNonce(address=address, next_nonce=on_chain)], ignore_conflicts=True)
        row = OperatorNonce.objects.select_for_update().get(address=address)
    nonce = row.next_nonce
    row.next_nonce += 1
    row.save(update_fields=["next_nonce"])
    return nonce


def settlement_submit(*, chain: FundLockClient, operator: LocalAccount, house: str, now: datetime,
                      batch_max: int | None = None) -> list[SettlementBatch]:
    """Send every pending on-chain cash movement in settle batches. Each batch's trackings and its
    signed transaction are committed before it is sent; a send that fails is re-sent by
    ``settlement_confirm``. Nonces come from a locked row, so two workers never share one."""
    now = require_aware(now)
    size = batch_max or settings.CCP_SETTLEMENT_BATCH_MAX
    # Zero amounts (positions closed worthless at expiry) move nothing on chain.
    pending = (CashMovement.objects.filter(origin__in=ON_CHAIN_ORIGINS, currency__token_address__isnull=False)
               .exclude(amount=0).exclude(trackings__state__in=LIVE_TRACKING_STATES)
               .select_related("client", "currency").order_by("id"))
    by_origin: dict[tuple, list[CashMovement]] = defaultdict(list)
    releases: dict[int, list[CashMovement]] = defaultdict(list)
    for movement in pending:
        if movement.origin == CashMovementOrigin.WITHDRAWAL:
            releases[movement.currency_id].append(movement)
        else:
            by_origin[(movement.currency_id, movement.origin, movement.origin_ref)].append(movement)
    sent = []
    for movements in by_origin.values():  # origins in the order they were booked (by id), not by name
        for chunk in _chunks(movements, size):
            sent.append(_submit_chunk(chain, operator, house, chunk, now))
    for _, movements in sorted(releases.items()):
        for start in range(0, len(movements), size):
            sent.append(_submit_chunk(chain, operator, house, movements[start:start + size], now))
    return [batch for batch in sent if batch is not None]


def _batch_call(chunk: list[CashMovement], house: str) -> tuple[bool, list[str], list[int]]:
    """(is a release, clients, amounts in token units) of a batch; ValueError if an amount is too precise."""
    currency = chunk[0].currency
    amounts = [token_units(m.amount, currency.decimals) for m in chunk]
    clients = [m.client.address for m in chunk]
    if chunk[0].origin == CashMovementOrigin.WITHDRAWAL:  # from balances into withdrawable, positive units
        return True, clients, [-amount for amount in amounts]
    if residual := -sum(amounts):
        clients, amounts = [*clients, house.lower()], [*amounts, residual]
    return False, clients, amounts


def _sign(chain: FundLockClient, operator: LocalAccount, release: bool, batch_id: bytes, currency: Currency,
          clients: list[str], amounts: list[int], nonce: int, gas_price: int) -> SignedTx:
    sign = chain.sign_release if release else chain.sign_settle
    return sign(operator=operator, batch_id=batch_id, token=currency.token_address, clients=clients, amounts=amounts,
                nonce=nonce, gas_price=gas_price)


def _record(batch_id: str, currency: Currency, signed: SignedTx, gas_price: int, chunk: list[CashMovement],
            chain: FundLockClient, now: datetime) -> SettlementBatch:
    """The batch and one tracking per movement, committed before the transaction is sent (after commit)."""
    batch = SettlementBatch.objects.create(
        batch_id=batch_id, currency=currency, nonce=signed.nonce, gas_price=gas_price, tx_hash=signed.tx_hash,
        raw_tx=signed.raw, movements_count=len(chunk), created_at=now, updated_at=now)
    CashMovementTracking.objects.bulk_create([
        CashMovementTracking(cash_movement=m, state=TrackingState.SUBMITTED, batch_id=batch_id,
                             tx_hash=signed.tx_hash, created_at=now, updated_at=now) for m in chunk])
    transaction.on_commit(lambda: _send(chain, signed), robust=True)
    return batch


def _submit_chunk(chain, operator, house, chunk: list[CashMovement], now) -> SettlementBatch | None:
    currency = chunk[0].currency
    try:
        release, clients, amounts = _batch_call(chunk, house)
    except ValueError as exc:
        alert_raise(key=f"settlement:{chunk[0].origin_ref}", kind=AlertKind.RECONCILIATION, now=now,
                    message=f"Cash movements of {chunk[0].origin_ref} cannot be settled exactly: {exc}")
        return None
    batch_id = _batch_id([m.pk for m in chunk])
    with transaction.atomic():
        nonce = operator_nonce_take(address=operator.address.lower(), w3=chain.w3)
        gas_price = chain.w3.eth.gas_price
        signed = _sign(chain, operator, release, batch_id, currency, clients, amounts, nonce, gas_price)
        return _record(batch_id.to_0x_hex(), currency, signed, gas_price, chunk, chain, now)


@transaction.atomic
def _replace(chain: FundLockClient, operator: LocalAccount, house: str, batch: SettlementBatch,
             now: datetime) -> None:
    """Send a stuck batch again with the same nonce and a higher gas price; only one of the two can be
    mined, and either applies the same batch id once."""
    batch = SettlementBatch.objects.select_for_update().get(pk=batch.pk)
    if batch.state != BatchState.SUBMITTED:
        return
    trackings = CashMovementTracking.objects.select_related("cash_movement__client", "cash_movement__currency").filter(
        tx_hash=batch.tx_hash, state=TrackingState.SUBMITTED).order_by("cash_movement_id")
    chunk = [t.cash_movement for t in trackings]
    release, clients, amounts = _batch_call(chunk, house)
    gas_price = max(int(batch.gas_price) * 5 // 4 + 1, chain.w3.eth.gas_price)
    signed = _sign(chain, operator, release, bytes.fromhex(batch.batch_id[2:]), batch.currency, clients, amounts,
                   batch.nonce, gas_price)
    batch.state, batch.updated_at = BatchState.REPLACED, now
    batch.save(update_fields=["state", "updated_at"])
    trackings.update(state=TrackingState.REPLACED, updated_at=now)
    _record(batch.batch_id, batch.currency, signed, gas_price, chunk, chain, now)


def _send(chain: FundLockClient, signed: SignedTx) -> None:
    try:
        chain.send(signed)
    except Exception as exc:  # the node is down, or already has it: settlement_confirm re-sends
        logger.warning("sending %s failed (%s); it will be re-sent", signed.tx_hash, exc)


def settlement_confirm(*, chain: FundLockClient, now: datetime, operator: LocalAccount | None = None,
                       house: str = "") -> dict[str, int]:
    """Follow every submitted batch: re-send it while the node does not know it, replace it (same nonce,
    higher gas price) when it is stuck longer than CCP_SETTLEMENT_REPLACE_AFTER, confirm it once its
    receipt (or a replaced sibling's: same nonce, only one is mined) is CCP_CHAIN_CONFIRMATIONS deep
    (settle value -> fundlock, in one transaction), or mark it failed so its movements are sent again
    under the same batch id. Safe to run twice."""
    now = require_aware(now)
    head = chain.head()
    counts = {"confirmed": 0, "failed": 0, "resent": 0, "replaced": 0}
    for batch in SettlementBatch.objects.filter(state=BatchState.SUBMITTED).order_by("nonce"):
        receipt = chain.receipt(batch.tx_hash) or next(filter(None, (
            chain.receipt(tx) for tx in SettlementBatch.objects.filter(
                batch_id=batch.batch_id, nonce=batch.nonce, state=BatchState.REPLACED).values_list("tx_hash", flat=True)
        )), None)
        if receipt is None:
            stuck = now - batch.updated_at >= settings.CCP_SETTLEMENT_REPLACE_AFTER
            if operator is not None and stuck and chain.pending(batch.tx_hash):
                _replace(chain, operator, house or operator.address, batch, now)
                counts["replaced"] += 1
            else:
                _send(chain, SignedTx(batch.tx_hash, bytes(batch.raw_tx), batch.nonce))
                counts["resent"] += 1
        elif receipt["blockNumber"] <= head - settings.CCP_CHAIN_CONFIRMATIONS:
            counts["confirmed" if receipt["status"] == 1 else "failed"] += 1
            _batch_settle(batch, receipt, now)
    return counts


@transaction.atomic
def _batch_settle(batch: SettlementBatch, receipt: dict, now: datetime) -> None:
    batch = SettlementBatch.objects.select_for_update().get(pk=batch.pk)
    if batch.state != BatchState.SUBMITTED:
        return
    trackings = list(CashMovementTracking.objects.select_related("cash_movement").filter(
        tx_hash=batch.tx_hash, state=TrackingState.SUBMITTED).order_by("id"))
    if receipt["status"] != 1:
        batch.state = BatchState.FAILED
        CashMovementTracking.objects.filter(pk__in=[t.pk for t in trackings]).update(
            state=TrackingState.FAILED, updated_at=now)
    else:
        batch.state, batch.block_number = BatchState.CONFIRMED, receipt["blockNumber"]
        CashMovementTracking.objects.filter(pk__in=[t.pk for t in trackings]).update(
            state=TrackingState.CONFIRMED, block_number=receipt["blockNumber"], updated_at=now)
        moved: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
        for tracking in trackings:
            movement = tracking.cash_movement
            moved[(movement.client_id, movement.currency_id)] += movement.amount
        # The chain now holds what was pending: fundlock gains it, settle value loses it.
        balances_publish(fund_locks_adjust(settle_value={k: -v for k, v in moved.items()}, order_value={},
                                           lockup_value={}, fundlock=moved, now=now).values())
        Withdrawal.objects.filter(cash_movement_id__in=[t.cash_movement_id for t in trackings]).update(
            state=WithdrawalState.RELEASED, released_at=now)
    batch.updated_at = now
    batch.save(update_fields=["state", "block_number", "updated_at"])



@dataclass(frozen=True)
class WithdrawalAsk:
    """What a client asks for; two asks with one client_withdrawal_id must be the same ask."""

    client_withdrawal_id: str
    currency: Currency
    amount: Decimal

    def matches(self, withdrawal: Withdrawal) -> bool:
        return (withdrawal.currency_id, withdrawal.amount) == (self.currency.pk, self.amount)


def _withdrawal_replay(withdrawal: Withdrawal, ask: WithdrawalAsk) -> Withdrawal:
    if not ask.matches(withdrawal):
        raise Conflict("This client_withdrawal_id was used for a different withdrawal.",
                       code="client_withdrawal_id_reused", extra={"withdrawal_id": withdrawal.pk})
    return withdrawal


@transaction.atomic
def withdrawal_request(*, client: Client, ask: WithdrawalAsk, now: datetime) -> tuple[Withdrawal, bool]:
    """Approve a withdrawal of up to the client's available collateral: a cash movement reserves it at
    once (settle value drops, so available does too) and settlement releases it on chain, where the
    client withdraws it. Returns (withdrawal, created).

    Locks the client's fund lock: two requests cannot both spend one balance. Idempotent on
    (client, client_withdrawal_id), as orders are: the same ask again returns the stored withdrawal
    (even once it no longer fits the balance it reserved); a different ask under that id is refused
    with ``client_withdrawal_id_reused``."""
    now = require_aware(now)
    currency, amount = ask.currency, ask.amount
    fund_lock = fund_locks_lock(keys=[(client.pk, currency.pk)]).get((client.pk, currency.pk))
    existing = Withdrawal.objects.filter(client=client, client_withdrawal_id=ask.client_withdrawal_id).first()
    if existing is not None:
        return _withdrawal_replay(existing, ask), False
    if amount <= 0:
        raise ApplicationError("A withdrawal must be positive.", code="withdrawal_not_positive")
    if currency.token_address is None:
        raise ApplicationError(f"{currency} is not held on chain.", code="currency_not_on_chain")
    try:
        token_units(amount, currency.decimals)
    except ValueError as exc:
        raise ApplicationError(str(exc), code="amount_too_precise") from exc
    available = fund_lock.available if fund_lock else Decimal(0)
    if amount > available:
        raise ApplicationError("The amount exceeds your available collateral (collateral held by open orders "
                               "and lockups cannot be withdrawn).", code="insufficient_collateral",
                               extra={"available": money_str(available)}, http_status=409)
    try:
        with transaction.atomic():
            movement = CashMovement.objects.create(client=client, currency=currency, amount=-amount,
                                                   origin=CashMovementOrigin.WITHDRAWAL,
                                                   origin_ref=f"withdrawal-{uuid.uuid4().hex}", created_at=now)
            withdrawal = Withdrawal.objects.create(client=client, client_withdrawal_id=ask.client_withdrawal_id,
                                                   currency=currency, amount=amount, cash_movement=movement,
                                                   created_at=now)
            balances_publish(fund_locks_adjust(settle_value={(client.pk, currency.pk): -amount}, order_value={},
                                               lockup_value={}, now=now).values())
    except IntegrityError:
        # The same id at once under another currency (another fund lock): the first one stored wins.
        existing = Withdrawal.objects.filter(client=client, client_withdrawal_id=ask.client_withdrawal_id).first()
        if existing is None:
            raise
        return _withdrawal_replay(existing, ask), False
    return withdrawal, True


def reconciliation_run(*, chain: FundLockClient, now: datetime) -> list[str]:
    """Compare every on-chain fund lock with the contract's balance at the block the deposit monitor
    has reached, and raise an operator alert for each drift (resolved once they agree again).
    Clients with a settlement batch still in flight are checked on a later run."""
    now = require_aware(now)
    edge = Edge.objects.filter(name=DEPOSITS_EDGE).first()
    if edge is None:
        return []
    in_flight = set(CashMovementTracking.objects.filter(state=TrackingState.SUBMITTED)
                    .values_list("cash_movement__client_id", flat=True))
    drifts = []
    for fund in FundLock.objects.select_related("client", "currency").filter(
            currency__token_address__isnull=False).exclude(client_id__in=in_flight).order_by("id"):
        on_chain = Decimal(chain.balance(fund.currency.token_address, fund.client.address, edge.block_number))
        on_chain = on_chain.scaleb(-fund.currency.decimals)
        key = f"reconcile:{fund.client.address}:{fund.currency.symbol}"
        if on_chain != fund.fundlock:
            alert_raise(key=key, kind=AlertKind.RECONCILIATION, now=now, message=(
                f"{fund.client} {fund.currency}: fundlock {money_str(fund.fundlock)} but the contract holds "
                f"{money_str(on_chain)} at block {edge.block_number}."))
            drifts.append(key)
        else:
            alert_resolve(key=key, now=now)
    return drifts
