"""The chain side of the clearing house: deposits in, cash movements out, each step idempotent.

- The deposit monitor reads FundLock ``Deposit`` logs only up to (head - confirmations), registers new
  clients, credits their fund locks and advances its edge in the same transaction. A reorg shallower
  than the confirmation depth never reaches it; a deeper one changes the hash of the edge's block (or
  the node lost that block), which stops the monitor with an operator alert at once instead of crediting
  anything twice. An operator moves the edge back (``ccp.system.services.edge_rewind``): deposits are
  keyed by (transaction hash, log index), so reading blocks again credits nothing twice.
- Settlement packs pending cash movements (auctions, expiries: each origin sums to zero) into
  ``settle`` transactions of at most ``batch_max`` movements. A larger origin is split into chunks,
  each balanced by a movement on the house account, in an order that keeps the house balance
  non-negative (its movements sum to zero over the origin). Trackings with the transaction hash are
  written before the transaction is sent; a confirmed receipt (after the confirmation depth) moves
  each amount from settle value into fundlock. A failed transaction is retried under the same batch
  id, which the contract applies once, after a wait that doubles with each failure.
- Settlement heals itself. The operator's nonces come from one locked row; when transactions sent from
  the operator's key outside the backend take nonces the backend gave to batches (or leave a nonce
  nothing fills), the row is taken from the chain again and those batches are re-signed under their own
  batch ids with fresh nonces. A batch id the contract has applied is confirmed, never sent again.
  Recently confirmed batches are checked against the contract: one a deep reorg lost is moved back
  (fundlock into settle value) and sent again. Operator alerts for batches failing or unconfirmed too long.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Min, QuerySet
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ccp.accounts.models import Client, FundLock
from ccp.accounts.services import balances_publish, client_register, fund_locks_adjust
from ccp.clock import require_aware
from ccp.contracts.models import Currency
from ccp.errors import ApplicationError, Conflict
from ccp.locks import fund_locks_lock
from ccp.money import money_str
from ccp.perps.cross import cross_unrealised_loss
from ccp.perps.fund import insurance_fund_address
from ccp.risk.collateral import collateral_covers
from ccp.settlement.chain.client import FundLockClient, SignedTx
from ccp.settlement.models import (
    BALANCED_ORIGINS,
    LIVE_TRACKING_STATES,
    BatchState,
    CashMovement,
    CashMovementOrigin,
    CashMovementTracking,
    ChainBalance,
    ChainContract,
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
REORG_ALERT = f"reorg:{DEPOSITS_EDGE}"
PENDING_PAGE = 100  # origins read per query by settlement_submit
RECHECK_MAX = 20  # confirmed batches checked against the chain per settlement_confirm run, newest first
# Every origin that moves collateral between clients (each origin ref sums to zero), and withdrawals (releases).
ON_CHAIN_ORIGINS = [*BALANCED_ORIGINS, CashMovementOrigin.WITHDRAWAL]


def token_units(amount: Decimal, decimals: int) -> int:
    """An amount in the token's base units; ValueError if it does not fit the token's precision."""
    units = amount.scaleb(decimals)
    if units != units.to_integral_value():
        raise ValueError(f"{amount} has more than {decimals} decimal places")
    return int(units)


def deposits_monitor(*, chain: FundLockClient, now: datetime, start_block: int = 0) -> int:
    """Credit confirmed Deposit events since the edge; returns how many were new. Safe to run twice.
    Stops with an operator alert at once when the edge's block changed (a reorganisation deeper than the
    confirmations) or is gone (the node lost blocks); the alert is resolved once the edge checks out again
    (e.g. after an operator moved it back)."""
    now = require_aware(now)
    edge = Edge.objects.filter(name=DEPOSITS_EDGE).first()
    head = chain.head()
    if edge is not None and (lost := _edge_lost(chain, edge, head)):
        alert_raise(key=REORG_ALERT, kind=AlertKind.CHAIN_REORG, now=now, message=(
            f"{lost} The deposit monitor stopped; check the deposits credited since then, then move the edge "
            "back (webconsole: Edges, action 'Move the edge back')."))
        return 0
    alert_resolve(key=REORG_ALERT, now=now)
    safe = head - settings.CCP_CHAIN_CONFIRMATIONS
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
            fund = Client.objects.filter(address=insurance_fund_address()).values_list("pk", flat=True).first()
            FundLock.objects.bulk_create([FundLock(client_id=client_id, currency_id=currency_id, updated_at=now,
                                                   insurance_fund=client_id == fund)
                                          for client_id, currency_id in credits], ignore_conflicts=True)
            balances_publish(fund_locks_adjust(settle_value={}, order_value={}, lockup_value={}, fundlock=credits,
                                               now=now).values())
            edge_advance(name=DEPOSITS_EDGE, now=now, block_number=end, block_hash=chain.block_hash(end) or "")
        start = end + 1
    return credited


def _edge_lost(chain: FundLockClient, edge: Edge, head: int) -> str:
    """Why the edge's block is no longer the block the monitor read, or '' if it still is."""
    found = chain.block_hash(edge.block_number) if edge.block_number <= head else None
    if found is None:
        return (f"Block {edge.block_number}, which the deposit monitor had reached, is gone (the node's head is "
                f"block {head}): the node lost blocks, e.g. it restarted with less state.")
    if edge.block_hash and found != edge.block_hash:
        return (f"Block {edge.block_number} changed after it was confirmed: a reorganisation deeper than "
                f"{settings.CCP_CHAIN_CONFIRMATIONS} blocks.")
    return ""


def _batch_id(movement_ids: list[int]) -> bytes:
    return Web3.keccak(text="ccp-settle:" + ",".join(map(str, sorted(movement_ids))))


def _batch_bytes(batch: SettlementBatch) -> bytes:
    return bytes.fromhex(batch.batch_id[2:])


def _chunks(movements: list[CashMovement], size: int) -> list[list[CashMovement]]:
    """Split one origin's movements into chunks of size - 1 (room for the house movement), ordered so
    the house receives before it pays: its running balance never goes below zero."""
    chunks = [movements[i:i + size - 1] for i in range(0, len(movements), size - 1)]
    return sorted(chunks, key=lambda chunk: sum((m.amount for m in chunk), Decimal(0)))


def _nonce_row(address: str, w3: Web3) -> OperatorNonce:
    """The operator's nonce row, locked (call inside a transaction). Everything that sends from the
    operator account takes this lock, so no two transactions share a nonce."""
    row = OperatorNonce.objects.select_for_update().filter(address=address).first()
    if row is None:
        # First use of the address: start from its count on chain. Two workers starting together
        # both insert; ON CONFLICT keeps the first row and the second waits for it, then for its lock.
        on_chain = w3.eth.get_transaction_count(Web3.to_checksum_address(address))
        OperatorNonce.objects.bulk_create([OperatorNonce(address=address, next_nonce=on_chain)], ignore_conflicts=True)
        row = OperatorNonce.objects.select_for_update().get(address=address)
    return row


def _nonce_next(row: OperatorNonce) -> int:
    nonce = row.next_nonce
    row.next_nonce += 1
    row.save(update_fields=["next_nonce"])
    return nonce


def operator_nonce_take(*, address: str, w3: Web3) -> int:
    """The operator's next nonce, taken under its row lock (call inside a transaction)."""
    return _nonce_next(_nonce_row(address, w3))


def _pending() -> QuerySet[CashMovement]:
    # Zero amounts (positions closed worthless at expiry) move nothing on chain.
    return (CashMovement.objects.filter(origin__in=ON_CHAIN_ORIGINS, currency__token_address__isnull=False)
            .exclude(amount=0).exclude(trackings__state__in=LIVE_TRACKING_STATES))


def _pending_groups(size: int, budget: int) -> Iterator[list[list[CashMovement]]]:
    """Pending movements as groups of chunks, each group sent in its order: an origin's chunks (the house
    receives before it pays), origins in booking order (by id, not by name), then each currency's
    withdrawals a chunk at a time. Reads one origin, or the withdrawals ``budget`` batches need, at a time."""
    after, seen = 0, set()
    while True:
        origins = list(_pending().exclude(origin=CashMovementOrigin.WITHDRAWAL)
                       .values("currency_id", "origin", "origin_ref").annotate(first_id=Min("id"))
                       .filter(first_id__gt=after).order_by("first_id")[:PENDING_PAGE])
        for key in origins:
            first_id = key.pop("first_id")
            if tuple(key.values()) not in seen:  # an origin partly sent this run comes back with a higher first id
                seen.add(tuple(key.values()))
                yield _chunks(list(_pending().filter(**key).select_related("client", "currency").order_by("id")), size)
            after = first_id
        if len(origins) < PENDING_PAGE:
            break
    currencies = (_pending().filter(origin=CashMovementOrigin.WITHDRAWAL).values_list("currency_id", flat=True)
                  .distinct().order_by("currency_id"))
    for currency_id in list(currencies):
        releases = list(_pending().filter(origin=CashMovementOrigin.WITHDRAWAL, currency_id=currency_id)
                        .select_related("client", "currency").order_by("id")[:size * budget])
        for start in range(0, len(releases), size):
            yield [releases[start:start + size]]


def _failures(movement_ids: list[int]) -> tuple[int, datetime | None]:
    """How often the most failed of these movements failed on chain, and when the last failure was."""
    failed = list(CashMovementTracking.objects.filter(cash_movement_id__in=movement_ids, state=TrackingState.FAILED)
                  .values("cash_movement_id").annotate(n=Count("id"), last=Max("updated_at")))
    if not failed:
        return 0, None
    return max(f["n"] for f in failed), max(f["last"] for f in failed)


def _retry_at(chunk: list[CashMovement]) -> datetime | None:
    """When a chunk that failed on chain may be sent again: the wait doubles with each failure."""
    failures, last = _failures([m.pk for m in chunk])
    if not failures:
        return None
    wait = settings.CCP_SETTLEMENT_RETRY_BASE * 2 ** min(failures - 1, 20)
    return last + min(wait, settings.CCP_SETTLEMENT_RETRY_MAX)


def settlement_submit(*, chain: FundLockClient, operator: LocalAccount, house: str, now: datetime,
                      batch_max: int | None = None) -> list[SettlementBatch]:
    """Send pending on-chain cash movements in settle (and release) batches, at most
    CCP_SETTLEMENT_BATCHES_PER_RUN per run and none while CCP_SETTLEMENT_IN_FLIGHT_MAX are unconfirmed.
    A chunk that failed on chain waits (CCP_SETTLEMENT_RETRY_BASE, doubling per failure up to
    CCP_SETTLEMENT_RETRY_MAX), and its origin's later chunks wait behind it. Each batch's trackings and its
    signed transaction are committed before it is sent; a send that fails is re-sent by
    ``settlement_confirm``. Nonces come from a locked row; a chunk another worker sent meanwhile is skipped."""
    now = require_aware(now)
    size = batch_max or settings.CCP_SETTLEMENT_BATCH_MAX
    in_flight = SettlementBatch.objects.filter(state=BatchState.SUBMITTED).count()
    budget = min(settings.CCP_SETTLEMENT_BATCHES_PER_RUN, settings.CCP_SETTLEMENT_IN_FLIGHT_MAX - in_flight)
    sent: list[SettlementBatch] = []
    if budget <= 0:
        return sent
    for group in _pending_groups(size, budget):
        for chunk in group:
            if (retry_at := _retry_at(chunk)) is not None and retry_at > now:
                break
            if (batch := _submit_chunk(chain, operator, house, chunk, now)) is None:
                break
            sent.append(batch)
            if len(sent) == budget:
                return sent
    return sent


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
    try:
        if chain.applied(batch_id):
            return _revive(chain, batch_id.to_0x_hex(), chunk, now)
        with transaction.atomic():
            row = _nonce_row(operator.address.lower(), chain.w3)
            # Every sender waits for that lock, so a worker that sent this chunk meanwhile has committed it.
            if CashMovementTracking.objects.filter(cash_movement__in=chunk, state__in=LIVE_TRACKING_STATES).exists():
                return None
            nonce = _nonce_next(row)
            gas_price = chain.w3.eth.gas_price
            signed = _sign(chain, operator, release, batch_id, currency, clients, amounts, nonce, gas_price)
            return _record(batch_id.to_0x_hex(), currency, signed, gas_price, chunk, chain, now)
    except IntegrityError:  # another worker sent it after all: its batch stands, this one rolled back
        logger.info("batch %s was sent by another worker", batch_id.to_0x_hex())
        return None


def _revive(chain: FundLockClient, batch_id: str, chunk: list[CashMovement], now: datetime) -> SettlementBatch | None:
    """A pending chunk whose batch id the contract applied already is never sent again. If one of its
    transactions recorded as replaced did it (mined after its successor failed), that transaction is the
    batch's again, for confirmation; otherwise an operator alert (nothing here knows that transaction)."""
    with transaction.atomic():
        for batch in SettlementBatch.objects.select_for_update().filter(batch_id=batch_id, state=BatchState.REPLACED):
            if (receipt := chain.receipt(batch.tx_hash)) is not None and receipt["status"] == 1:
                batch.state, batch.updated_at = BatchState.SUBMITTED, now
                batch.save(update_fields=["state", "updated_at"])
                CashMovementTracking.objects.bulk_create([
                    CashMovementTracking(cash_movement=m, state=TrackingState.SUBMITTED, batch_id=batch_id,
                                         tx_hash=batch.tx_hash, created_at=now, updated_at=now) for m in chunk])
                return batch
    alert_raise(key=f"settlement:applied:{batch_id}", kind=AlertKind.RECONCILIATION, now=now, message=(
        f"Batch {batch_id} ({len(chunk)} movements of {chunk[0].origin_ref}) is applied on chain by a transaction "
        "not recorded here (a database restored from a backup?); it is not sent again. Compare the chain with "
        "the settlement batches."))
    return None


@transaction.atomic
def _resign(chain: FundLockClient, operator: LocalAccount, house: str, batch: SettlementBatch, *, nonce: int,
            gas_price: int, now: datetime) -> bool:
    """Sign a submitted batch again, same batch id and movements, with this nonce and gas price; the old
    transaction becomes 'replaced'. If both are mined, the first applies the batch id and the other reverts.
    Locks the batch row: False if it is no longer submitted."""
    batch = SettlementBatch.objects.select_for_update().get(pk=batch.pk)
    if batch.state != BatchState.SUBMITTED:
        return False
    trackings = CashMovementTracking.objects.select_related("cash_movement__client", "cash_movement__currency").filter(
        tx_hash=batch.tx_hash, state=TrackingState.SUBMITTED).order_by("cash_movement_id")
    chunk = [t.cash_movement for t in trackings]
    release, clients, amounts = _batch_call(chunk, house)
    signed = _sign(chain, operator, release, _batch_bytes(batch), batch.currency, clients, amounts, nonce, gas_price)
    batch.state, batch.updated_at = BatchState.REPLACED, now
    batch.save(update_fields=["state", "updated_at"])
    trackings.update(state=TrackingState.REPLACED, updated_at=now)
    _record(batch.batch_id, batch.currency, signed, gas_price, chunk, chain, now)
    return True


def _send(chain: FundLockClient, signed: SignedTx) -> str:
    """Send a signed transaction; '' or the node's refusal (down, already known, nonce too low: settlement_confirm
    looks again)."""
    try:
        chain.send(signed)
    except Exception as exc:
        logger.warning("sending %s failed (%s); it will be re-sent", signed.tx_hash, exc)
        return str(exc) or type(exc).__name__
    return ""


def _receipt(chain: FundLockClient, batch: SettlementBatch) -> dict | None:
    """The receipt that decides a submitted batch: a successful one of any transaction of its batch id (one
    replaced, or re-signed with another nonce), else its own failed one or a failed one with its nonce."""
    own = chain.receipt(batch.tx_hash)
    if own is not None and own["status"] == 1:
        return own
    decided = own
    for tx_hash, nonce in (SettlementBatch.objects.filter(batch_id=batch.batch_id, state=BatchState.REPLACED)
                           .values_list("tx_hash", "nonce")):
        receipt = chain.receipt(tx_hash)
        if receipt is not None and receipt["status"] == 1:
            return receipt
        if receipt is not None and nonce == batch.nonce:
            decided = decided or receipt
    return decided


def settlement_confirm(*, chain: FundLockClient, now: datetime, operator: LocalAccount | None = None,
                       house: str = "") -> dict[str, int]:
    """Follow the submitted batches, lowest nonce first, at most CCP_SETTLEMENT_IN_FLIGHT_MAX:
    - mined CCP_CHAIN_CONFIRMATIONS deep (its own transaction or another of its batch id): confirmed
      (settle value -> fundlock, one transaction) if it succeeded or the contract applied its batch id
      anyway, else failed (its movements are sent again under the same batch id after a wait);
    - not mined, and its nonce below the operator's mined transaction count (another transaction took it):
      confirmed if the contract applied its batch id, else re-signed with a fresh nonce (a nonce resync);
    - not mined, the lowest such, and its nonce above that count for CCP_SETTLEMENT_REPLACE_AFTER (it waits
      behind a nonce nothing fills): a nonce resync too;
    - not mined, pending in the node for CCP_SETTLEMENT_REPLACE_AFTER: replaced (same nonce, higher gas
      price); otherwise sent again.
    First, recently confirmed batches are checked against the contract: one the chain lost is moved back and
    sent again (with an alert and a nonce resync). An alert for a batch unconfirmed longer than
    CCP_SETTLEMENT_ALERT_AFTER. Without ``operator`` nothing is signed. Counts only what this run changed
    (a batch another worker settled meanwhile is not counted). Safe to run twice and concurrently."""
    now = require_aware(now)
    counts = {"confirmed": 0, "failed": 0, "resent": 0, "replaced": 0, "resigned": 0, "lost": 0}
    counts["lost"] = _confirmed_recheck(chain, now)
    # The mined count is read before any receipt: a nonce below it went to a mined transaction for good.
    mined = chain.nonce(operator.address) if operator is not None else None
    safe = max(chain.head() - settings.CCP_CHAIN_CONFIRMATIONS, 0)
    resync = counts["lost"] > 0
    batches = list(SettlementBatch.objects.filter(state=BatchState.SUBMITTED).order_by("nonce", "id")
                   [:settings.CCP_SETTLEMENT_IN_FLIGHT_MAX])
    first_sent = dict(SettlementBatch.objects.filter(batch_id__in=[b.batch_id for b in batches]).exclude(
        state=BatchState.FAILED).values("batch_id").annotate(first=Min("created_at")).values_list("batch_id", "first"))
    lowest = True
    for batch in batches:
        if (receipt := _receipt(chain, batch)) is not None:
            if receipt["blockNumber"] <= safe:
                applied = receipt["status"] == 1 or chain.applied(_batch_bytes(batch), safe)
                if _batch_settle(batch, receipt["blockNumber"], applied, now):
                    counts["confirmed" if applied else "failed"] += 1
            continue
        waiting_first, lowest = lowest, False
        _unconfirmed_alert(batch, first_sent.get(batch.batch_id, batch.created_at), now)
        if mined is not None and batch.nonce < mined:
            if chain.applied(_batch_bytes(batch), safe):  # applied by a transaction not tracked here
                counts["confirmed"] += _batch_settle(batch, safe, True, now)
            elif not chain.applied(_batch_bytes(batch)):  # (applied but not yet deep: wait)
                resync = True
            continue
        stuck = now - batch.updated_at >= settings.CCP_SETTLEMENT_REPLACE_AFTER
        if mined is not None and waiting_first and batch.nonce > mined and stuck:
            resync = True
        elif operator is not None and stuck and not resync and chain.pending(batch.tx_hash):  # (a resync re-signs)
            counts["replaced"] += _resign(chain, operator, house or operator.address, batch, nonce=batch.nonce,
                                          gas_price=max(int(batch.gas_price) * 5 // 4 + 1, chain.w3.eth.gas_price),
                                          now=now)
        else:
            refused = _send(chain, SignedTx(batch.tx_hash, bytes(batch.raw_tx), batch.nonce))
            counts["resent"] += 1
            resync = resync or "nonce too low" in refused.lower()
    if resync and operator is not None:
        counts["resigned"] = operator_nonce_resync(chain=chain, operator=operator, house=house or operator.address,
                                                   now=now)
    return counts


def operator_nonce_resync(*, chain: FundLockClient, operator: LocalAccount, house: str, now: datetime) -> int:
    """Take the operator's nonce from the chain again, and re-sign under their own batch ids, with fresh
    nonces, the submitted batches that cannot be mined as they are: those whose nonce another transaction
    took, and those behind a nonce nothing fills. Afterwards the unmined batches hold the nonces right
    after the operator's mined transaction count, without a gap, and the nonce row follows them. A batch
    whose id the contract already applied is left to confirmation, never signed again. Locks the nonce
    row (nothing is signed meanwhile), then each re-signed batch. Safe to run twice: a second run finds
    the nonces in place. Returns how many batches were re-signed."""
    now = require_aware(now)
    with transaction.atomic():
        row = _nonce_row(operator.address.lower(), chain.w3)
        mined = chain.nonce(operator.address)  # under the lock and before the receipts
        waiting = []
        for batch in SettlementBatch.objects.filter(state=BatchState.SUBMITTED).order_by("nonce", "id"):
            if _receipt(chain, batch) is not None:
                # Mined after the count was read (a block came in between): its nonce is taken too.
                mined = max(mined, batch.nonce + 1)
            elif not chain.applied(_batch_bytes(batch)):
                waiting.append(batch)
        keep = 0  # those already in place keep their nonce (and their transaction in the node)
        while keep < len(waiting) and waiting[keep].nonce == mined + keep:
            keep += 1
        # Above every price in flight, so a re-signed transaction replaces whatever waits at its nonce.
        gas_price = max([chain.w3.eth.gas_price, *(int(b.gas_price) * 5 // 4 + 1 for b in waiting)])
        resigned = sum(_resign(chain, operator, house, batch, nonce=mined + offset, gas_price=gas_price, now=now)
                       for offset, batch in enumerate(waiting[keep:], start=keep))
        if row.next_nonce != mined + len(waiting) or resigned:
            logger.warning("operator nonce resynced from the chain: next %s (was %s), %s batches re-signed",
                           mined + len(waiting), row.next_nonce, resigned)
        row.next_nonce = mined + len(waiting)
        row.save(update_fields=["next_nonce"])
    return resigned


def _unconfirmed_alert(batch: SettlementBatch, first_sent_at: datetime, now: datetime) -> None:
    if now - first_sent_at >= settings.CCP_SETTLEMENT_ALERT_AFTER:
        alert_raise(key=f"settlement:unconfirmed:{batch.batch_id}", kind=AlertKind.SETTLEMENT_STUCK, now=now, message=(
            f"Settlement batch {batch.batch_id} ({batch.movements_count} movements, nonce {batch.nonce}) is not "
            f"confirmed since it was first sent at {first_sent_at:%Y-%m-%d %H:%M:%S} UTC. Check the node and the "
            "operator account (gas funds, transactions sent from it outside the clearing house)."))


def _confirmed_recheck(chain: FundLockClient, now: datetime) -> int:
    """Check the newest batches confirmed in the last CCP_SETTLEMENT_RECHECK_BLOCKS blocks (or above the
    head) against the contract's ``applied``, and move back those the chain lost. Returns how many."""
    head = chain.head()
    recent = SettlementBatch.objects.filter(state=BatchState.CONFIRMED,
                                            block_number__gte=head - settings.CCP_SETTLEMENT_RECHECK_BLOCKS)
    if deployed := ChainContract.objects.filter(name="FundLock", address=chain.address).first():
        recent = recent.filter(updated_at__gte=deployed.created_at)  # an earlier deployment's batches are not here
    lost = 0
    for batch in recent.order_by("-block_number", "-id")[:RECHECK_MAX]:
        if chain.applied(_batch_bytes(batch)):
            continue
        try:
            lost += _batch_unsettle(batch, head, now)
        except IntegrityError as exc:  # a fund lock would go negative: the books need an operator
            alert_raise(key=f"reorg:settlement:{batch.batch_id}", kind=AlertKind.CHAIN_REORG, now=now, message=(
                f"Settlement batch {batch.batch_id}, confirmed in block {batch.block_number}, is no longer applied "
                f"on chain (head {head}) and cannot be moved back: {exc}"))
    return lost


def _amounts(trackings: list[CashMovementTracking]) -> dict[tuple[int, int], Decimal]:
    """The trackings' amounts per (client, currency)."""
    moved: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for tracking in trackings:
        moved[(tracking.cash_movement.client_id, tracking.cash_movement.currency_id)] += tracking.cash_movement.amount
    return moved


@transaction.atomic
def _batch_unsettle(batch: SettlementBatch, head: int, now: datetime) -> int:
    """Move a confirmed batch the chain lost back to submitted, with its trackings; its amounts go from
    fundlock back into settle value and its withdrawals are pending again. settlement_confirm then sends it
    again (same transaction, or re-signed if its nonce was taken). Locks the batch row, then the fund locks."""
    batch = SettlementBatch.objects.select_for_update().get(pk=batch.pk)
    if batch.state != BatchState.CONFIRMED:
        return 0
    trackings = list(CashMovementTracking.objects.select_related("cash_movement").filter(
        tx_hash=batch.tx_hash, state=TrackingState.CONFIRMED).order_by("id"))
    moved = _amounts(trackings)
    balances_publish(fund_locks_adjust(settle_value=moved, order_value={}, lockup_value={},
                                       fundlock={k: -v for k, v in moved.items()}, now=now).values())
    CashMovementTracking.objects.filter(pk__in=[t.pk for t in trackings]).update(
        state=TrackingState.SUBMITTED, block_number=None, updated_at=now)
    Withdrawal.objects.filter(cash_movement_id__in=[t.cash_movement_id for t in trackings],
                              state=WithdrawalState.RELEASED).update(state=WithdrawalState.PENDING, released_at=None)
    alert_raise(key=f"reorg:settlement:{batch.batch_id}", kind=AlertKind.CHAIN_REORG, now=now, message=(
        f"Settlement batch {batch.batch_id} ({batch.movements_count} movements), confirmed in block "
        f"{batch.block_number}, is no longer applied on chain (head {head}): a reorganisation deeper than "
        f"{settings.CCP_CHAIN_CONFIRMATIONS} blocks, or the node lost state. Its amounts are back in settle "
        "value and it is being sent again."))
    batch.state, batch.block_number, batch.updated_at = BatchState.SUBMITTED, None, now
    batch.save(update_fields=["state", "block_number", "updated_at"])
    return 1


@transaction.atomic
def _batch_settle(batch: SettlementBatch, block_number: int, applied: bool, now: datetime) -> bool:
    """Confirm a batch the contract applied (settle value -> fundlock, withdrawals released), or fail one it
    did not (its movements are sent again after a wait; an alert after CCP_SETTLEMENT_ALERT_FAILURES).
    Locks the batch row, then the fund locks: False if another worker settled the batch first."""
    batch = SettlementBatch.objects.select_for_update().get(pk=batch.pk)
    if batch.state != BatchState.SUBMITTED:
        return False
    trackings = list(CashMovementTracking.objects.select_related("cash_movement").filter(
        tx_hash=batch.tx_hash, state=TrackingState.SUBMITTED).order_by("id"))
    alert_resolve(key=f"settlement:unconfirmed:{batch.batch_id}", now=now)
    if not applied:
        batch.state = BatchState.FAILED
        CashMovementTracking.objects.filter(pk__in=[t.pk for t in trackings]).update(
            state=TrackingState.FAILED, updated_at=now)
        failures, _ = _failures([t.cash_movement_id for t in trackings])
        if failures >= settings.CCP_SETTLEMENT_ALERT_FAILURES:
            alert_raise(key=f"settlement:failing:{batch.batch_id}", kind=AlertKind.SETTLEMENT_STUCK, now=now, message=(
                f"Settlement batch {batch.batch_id} ({batch.movements_count} movements) failed on chain {failures} "
                f"times (last in block {block_number}); it is sent again less and less often. Check its "
                "transaction's revert reason and the balances on chain."))
    else:
        batch.state, batch.block_number = BatchState.CONFIRMED, block_number
        CashMovementTracking.objects.filter(pk__in=[t.pk for t in trackings]).update(
            state=TrackingState.CONFIRMED, block_number=block_number, updated_at=now)
        moved = _amounts(trackings)
        # The chain now holds what was pending: fundlock gains it, settle value loses it.
        balances_publish(fund_locks_adjust(settle_value={k: -v for k, v in moved.items()}, order_value={},
                                           lockup_value={}, fundlock=moved, now=now).values())
        Withdrawal.objects.filter(cash_movement_id__in=[t.cash_movement_id for t in trackings]).update(
            state=WithdrawalState.RELEASED, released_at=now)
        alert_resolve(key=f"settlement:failing:{batch.batch_id}", now=now)
    batch.updated_at = now
    batch.save(update_fields=["state", "block_number", "updated_at"])
    return True



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
    # A cross perpetual loss at the mark not settled in cash yet is backed by this collateral too.
    loss = cross_unrealised_loss(client_id=client.pk, currency_id=currency.pk) if fund_lock else Decimal(0)
    if not collateral_covers(fund_lock, amount + loss):
        available = fund_lock.available - loss if fund_lock else Decimal(0)
        raise ApplicationError("The amount exceeds your available collateral (collateral held by open orders, "
                               "lockups, perpetual margins and cross losses at the mark cannot be withdrawn).",
                               code="insufficient_collateral", extra={"available": money_str(max(available, 0))},
                               http_status=409)
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
    has reached, record what the contract held (``ChainBalance``, shown in the webconsole), and raise an
    operator alert for each drift (resolved once they agree again).
    Clients with a settlement batch still in flight are checked on a later run, and nothing is compared
    while the node lacks the edge's block (the deposit monitor has raised an alert for that)."""
    now = require_aware(now)
    edge = Edge.objects.filter(name=DEPOSITS_EDGE).first()
    if edge is None or edge.block_number > chain.head():
        return []
    in_flight = set(CashMovementTracking.objects.filter(state=TrackingState.SUBMITTED)
                    .values_list("cash_movement__client_id", flat=True))
    drifts = []
    for fund in FundLock.objects.select_related("client", "currency").filter(
            currency__token_address__isnull=False).exclude(client_id__in=in_flight).order_by("id"):
        on_chain = Decimal(chain.balance(fund.currency.token_address, fund.client.address, edge.block_number))
        on_chain = on_chain.scaleb(-fund.currency.decimals)
        ChainBalance.objects.update_or_create(fund_lock=fund, defaults={
            "balance": on_chain, "fundlock": fund.fundlock, "block_number": edge.block_number, "seen_at": now})
        key = f"reconcile:{fund.client.address}:{fund.currency.symbol}"
        if on_chain != fund.fundlock:
            alert_raise(key=key, kind=AlertKind.RECONCILIATION, now=now, message=(
                f"{fund.client} {fund.currency}: fundlock {money_str(fund.fundlock)} but the contract holds "
                f"{money_str(on_chain)} at block {edge.block_number}."))
            drifts.append(key)
        else:
            alert_resolve(key=key, now=now)
    return drifts
