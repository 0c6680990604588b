from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from eth_utils import is_address, is_checksum_address, to_checksum_address

from ccp.accounts.models import ApiToken, Client, FundLock, SignInChallenge
from ccp.accounts.siwe import SignInMessage, signer_recover
from ccp.clock import iso_utc, require_aware
from ccp.db import FEW_ROWS, Behind, Columns, bulk_update_rows, bulk_update_write, write_behind, write_held
from ccp.errors import ApplicationError, Unauthorized
from ccp.locks import fund_locks_lock
from ccp.money import money_str
from ccp.redisheld import round_trip
from ccp.streams import client_stream_publish_many, token_revoked_publish

if TYPE_CHECKING:
    from ccp.throttling import Count

logger = logging.getLogger(__name__)


class SignInError(Unauthorized):
    """Sign-in refused; the code says why. Nothing changes (the nonce stays usable until it expires)."""


def address_normalize(address: str) -> str:
    """Lower-case 0x address; ApplicationError ``invalid_address`` otherwise."""
    if not isinstance(address, str) or not address.startswith("0x") or not is_address(address):
        raise ApplicationError("Not an Ethereum address (0x and 40 hex digits).", code="invalid_address")
    body = address[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(address):
        # A mixed-case address carries an EIP-55 checksum: a wrong one means a mistyped address.
        raise ApplicationError("Mixed-case address with a wrong EIP-55 checksum.", code="invalid_address")
    return address.lower()


def client_register(*, address: str, now: datetime) -> Client:
    """The client with this address, created on first sight. Idempotent."""
    client, _ = Client.objects.get_or_create(address=address_normalize(address),
                                             defaults={"registered_at": require_aware(now)})
    return client


def _signin_demo_allowed(address: str) -> bool:
    return settings.CCP_SIGNIN_ALLOW_ANY or address in settings.CCP_SIGNIN_ALLOWED_ADDRESSES


def _signin_refuse_unregistered(address: str) -> None:
    if not _signin_demo_allowed(address) and not Client.objects.filter(address=address).exists():
        raise SignInError("This address has no deposit with the clearing house yet.",
                          code="signin_address_not_registered", http_status=403)


def signin_challenge_create(*, address: str, now: datetime) -> SignInChallenge:
    """Issue a nonce and the exact EIP-4361 message the wallet must sign. Refuses unknown addresses."""
    now = require_aware(now)
    address = address_normalize(address)
    _signin_refuse_unregistered(address)
    nonce = secrets.token_hex(16)
    message = SignInMessage(
        domain=settings.CCP_SIGNIN_DOMAIN, address=to_checksum_address(address), uri=settings.CCP_SIGNIN_URI,
        chain_id=settings.CCP_CHAIN_ID, nonce=nonce, issued_at=now, expiration_time=now + settings.CCP_SIGNIN_NONCE_TTL,
    )
    return SignInChallenge.objects.create(nonce=nonce, address=address, message=message.text(), issued_at=now,
                                          expires_at=message.expiration_time)


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once; only its hash is stored
    api_token: ApiToken


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def signin_token_issue(*, message: str, signature: str, now: datetime) -> IssuedToken:
    """Exchange a signed sign-in message for an API token.

    Locks the challenge row, so two requests with one nonce cannot both succeed; the nonce is
    spent only on success. Checks, in order: layout, nonce known / unused / unexpired, domain,
    message unaltered, signer.
    """
    now = require_aware(now)
    try:
        parsed = SignInMessage.parse(message)
    except ValueError as exc:
        raise SignInError(str(exc), code="signin_message_malformed", http_status=400) from exc
    challenge = SignInChallenge.objects.select_for_update().filter(nonce=parsed.nonce).first()
    if challenge is None:
        raise SignInError("Unknown nonce: ask for a new one.", code="signin_nonce_unknown")
    if challenge.used_at is not None:
        raise SignInError("This nonce was already used: ask for a new one.", code="signin_nonce_used")
    if now >= challenge.expires_at:
        raise SignInError("This nonce has expired: ask for a new one.", code="signin_nonce_expired")
    if parsed.domain != settings.CCP_SIGNIN_DOMAIN:
        raise SignInError(f"The message is for {parsed.domain}, not {settings.CCP_SIGNIN_DOMAIN}.",
                          code="signin_wrong_domain")
    if message != challenge.message:
        raise SignInError("The message differs from the one issued with this nonce.", code="signin_message_altered")
    try:
        signer = signer_recover(message, signature)
    except ValueError as exc:
        raise SignInError(str(exc), code="signin_signature_invalid", http_status=400) from exc
    if signer != challenge.address:
        raise SignInError("The signature was not made by the address in the message.", code="signin_wrong_signer")
    _signin_refuse_unregistered(challenge.address)
    client = client_register(address=challenge.address, now=now)
    challenge.used_at = now
    challenge.save(update_fields=["used_at"])
    token = secrets.token_urlsafe(32)
    api_token = ApiToken.objects.create(key_hash=token_hash(token), prefix=token[:8], client=client, created_at=now,
                                        expires_at=now + settings.CCP_API_TOKEN_TTL)
    return IssuedToken(token=token, api_token=api_token)


def signin_records_sweep(*, now: datetime, batch: int = 5000, max_batches: int = 20) -> dict[str, int]:
    """Delete sign-in challenges expired for more than CCP_SIGNIN_CHALLENGE_RETAIN and API tokens
    expired or revoked for more than CCP_API_TOKEN_RETAIN; returns how many of each. Bounded: at
    most ``max_batches`` deletes of ``batch`` rows per kind, the rest on the next run. Safe twice."""
    now = require_aware(now)
    done = {"challenges": 0, "tokens": 0}
    stale = {
        "challenges": SignInChallenge.objects.filter(expires_at__lt=now - settings.CCP_SIGNIN_CHALLENGE_RETAIN),
        "tokens": ApiToken.objects.filter(Q(expires_at__lt=now - settings.CCP_API_TOKEN_RETAIN)
                                          | Q(revoked_at__lt=now - settings.CCP_API_TOKEN_RETAIN)),
    }
    for kind, rows in stale.items():
        for _ in range(max_batches):
            ids = list(rows.order_by("id").values_list("id", flat=True)[:batch])
            if not ids:
                break
            done[kind] += rows.model.objects.filter(id__in=ids).delete()[0]
    return done


def api_token_authenticate(*, token: str, now: datetime, count: Callable[[int], Count] | None = None) -> ApiToken:
    """The live token for this bearer string, its client read with it (``_api_token_cached``); Unauthorized
    ``token_invalid`` / ``token_expired`` otherwise. ``count`` (``ccp.throttling.client_count``): the client's
    request counter, counted in the revocation epoch's read (one Redis round trip) when the token is served from
    this process's cache, so only once it is known to be live and unexpired (its ``used`` set then)."""
    api_token = _api_token_cached(token_hash(token), now=require_aware(now), count=count)
    if api_token is None or api_token.revoked_at is not None:
        raise Unauthorized("Unknown or revoked API token.", code="token_invalid")
    if now >= api_token.expires_at:
        raise Unauthorized("This API token has expired: sign in again.", code="token_expired")
    return api_token


_TOKEN_CLIENT = ApiToken._meta.get_field("client")

# Live tokens a process read in the last TOKEN_CACHE_S seconds, by key hash: (when read, the revocation epoch
# then, the token's and its client's rows). An entry serves only while Redis holds the same epoch: every
# revocation changes it (``api_token_revoke``, before and after its commit), so a revoked token is refused
# at once by every process; without Redis nothing is served from here. The epoch lives with the request
# counters (CCP_THROTTLE_REDIS_URL): state every request reads, which tests empty between tests.
TOKEN_CACHE_S = 5.0
TOKEN_CACHE_MAX = 10_000  # entries per process; emptied when full
_TOKEN_EPOCH_KEY = "ccp:api-tokens:epoch"
_tokens: dict[str, tuple[float, bytes, tuple]] = {}


@functools.cache
def _epoch_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.CCP_THROTTLE_REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)


# The epoch, and a request counter counted only if the epoch is the one given (KEYS: the epoch, the counter; ARGV:
# the epoch expected, the count, the counter's expiry): {the counter now} when it is, else the epoch as it is.
_EPOCH_THEN_COUNT = b"""
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then return epoch end
local used = redis.call('INCRBY', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3], 'NX')
return {used}
"""
_EPOCH_THEN_COUNT_SHA = hashlib.sha1(_EPOCH_THEN_COUNT).hexdigest()


def _epoch_get(expected: bytes | None = None, count: Count | None = None) -> bytes | None:
    """GET of the revocation epoch on a connection of this thread's own (``ccp.redisheld.round_trip``: made by
    ``_epoch_redis``'s pool, with its settings, not taken from it and given back: the pool's checks around a command
    cost as much as the GET; a dropped connection made again once). With ``count``: counted in the same round trip
    (``_EPOCH_THEN_COUNT``, its ``used`` set) if the epoch is ``expected``, not counted otherwise. The counters
    live in this Redis too (CCP_THROTTLE_REDIS_URL)."""
    if count is None:
        (epoch,) = round_trip(_epoch_redis(), [(("GET", _TOKEN_EPOCH_KEY), {})])
    else:
        args = (2, _TOKEN_EPOCH_KEY, count.key, expected, 1, count.expire_s)
        (epoch,) = round_trip(_epoch_redis(), [(("EVALSHA", _EPOCH_THEN_COUNT_SHA, *args), {})])
        if isinstance(epoch, redis.exceptions.NoScriptError):  # the first time on this Redis (or after a restart)
            (epoch,) = round_trip(_epoch_redis(), [(("EVAL", _EPOCH_THEN_COUNT, *args), {})])
        if isinstance(epoch, list):
            count.used, epoch = epoch[0], expected
    if isinstance(epoch, redis.ResponseError):
        raise epoch
    return epoch


def _tokens_epoch(expected: bytes | None = None, count: Count | None = None) -> bytes | None:
    """The revocation epoch (one is set if Redis has none, say after a restart); None without Redis. ``count``:
    as ``_epoch_get``."""
    try:
        epoch = _epoch_get(expected, count)
        if epoch is None:
            _epoch_redis().set(_TOKEN_EPOCH_KEY, secrets.token_hex(8), nx=True)
            epoch = _epoch_redis().get(_TOKEN_EPOCH_KEY)
        return epoch
    except redis.RedisError:
        return None


def _tokens_epoch_move() -> None:
    """A new revocation epoch: every process reads its cached tokens again. Never fails its caller (without
    Redis no process serves a cached token)."""
    try:
        _epoch_redis().set(_TOKEN_EPOCH_KEY, secrets.token_hex(8))
    except redis.RedisError as exc:
        logger.warning("API token epoch not moved, Redis unreachable: %s", exc)


def _api_token_cached(key_hash: str, *, now: datetime,
                      count: Callable[[int], Count] | None = None) -> ApiToken | None:
    """``_api_token_read``, from this process's cache while the entry is under TOKEN_CACHE_S old and the
    revocation epoch has not moved (one Redis read instead of the database's; fresh instances each time). ``count``:
    as ``api_token_authenticate``, for an entry served unexpired at ``now``."""
    hit = _tokens.get(key_hash)
    if hit is not None and time.monotonic() - hit[0] < TOKEN_CACHE_S:
        api_token = _api_token_instance(hit[2])
        counted = count(api_token.client_id) if count is not None and now < api_token.expires_at else None
        epoch = _tokens_epoch(hit[1], counted)
        if epoch is not None and epoch == hit[1]:
            return api_token
    else:
        epoch = _tokens_epoch()
    read_at = time.monotonic()
    row = _api_token_row(key_hash)
    api_token = None if row is None else _api_token_instance(row)
    if epoch is not None and api_token is not None and api_token.revoked_at is None:
        if len(_tokens) >= TOKEN_CACHE_MAX:
            _tokens.clear()
        _tokens[key_hash] = (read_at, epoch, row)
    return api_token


def _api_token_row(key_hash: str) -> tuple | None:
    """The row of the token with this hash and its client's, in one plain statement (every request reads it:
    compiling the queryset cost more than the query)."""
    token, client = Columns.of(ApiToken), Columns.of(Client)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {token.select('t')}, {client.select('c')} FROM {ApiToken._meta.db_table} AS t "
                       f"JOIN {Client._meta.db_table} AS c ON c.id = t.client_id WHERE t.key_hash = %s", [key_hash])
        return cursor.fetchone()


def _api_token_instance(row: tuple) -> ApiToken:
    token, client = Columns.of(ApiToken), Columns.of(Client)
    api_token = token.instance(row[:len(token.attnames)])
    _TOKEN_CLIENT.set_cached_value(api_token, client.instance(row[len(token.attnames):]))
    return api_token


@transaction.atomic
def api_token_revoke(*, api_token: ApiToken, now: datetime) -> None:
    """Sign out: the token stops working at once, in every process (the API token cache's epoch moves before
    the update and again after commit: a process that read the token meanwhile reads it again), and private
    streams opened with it close after commit. Idempotent."""
    _tokens_epoch_move()
    ApiToken.objects.filter(pk=api_token.pk, revoked_at__isnull=True).update(revoked_at=require_aware(now))
    transaction.on_commit(_tokens_epoch_move)
    token_revoked_publish(api_token.client_id, api_token.pk)


@transaction.atomic
def fund_lock_credit(*, client: Client, currency, amount: Decimal, now: datetime) -> FundLock:
    """Add ``amount`` to the client's fundlock (collateral seen on chain). Locks the fund lock row.

    Not idempotent by itself: its caller owns the key (the chain monitor's deposit event, or the
    demo simulator's top-up that only runs below a threshold)."""
    if amount <= 0:
        raise ApplicationError("A deposit must be positive.", code="deposit_not_positive")
    now = require_aware(now)
    fund_lock, _ = FundLock.objects.select_for_update().get_or_create(
        client=client, currency=currency, defaults={"updated_at": now})
    fund_lock.fundlock += amount
    fund_lock.updated_at = now
    fund_lock.save(update_fields=["fundlock", "updated_at"])
    return fund_lock


Deltas = dict[tuple[int, int], Decimal]  # (client id, currency id) -> signed change
_ADJUSTED = ("fundlock", "settle_value", "order_value", "lockup_value", "margin_value", "updated_at")


def fund_locks_adjust(*, settle_value: Deltas, order_value: Deltas, lockup_value: Deltas, now: datetime,
                      fundlock: Deltas | None = None, margin_value: Deltas | None = None,
                      locked: Mapping[tuple[int, int], FundLock] | None = None,
                      behind: Behind | None = None) -> dict[tuple[int, int], FundLock]:
    """Apply signed changes to many fund locks at once, locking them in id order (call inside the
    caller's transaction, in the lock order of ``ccp.locks``; ``locked``: fund locks the caller already
    locked in this transaction, by (client, currency), not read again). The database refuses any whose
    available would drop below zero (with ``behind``, the caller's writer on a thread (``ccp.db.Behind``),
    which writes them: when the caller waits for it)."""
    fundlock, margin_value = fundlock or {}, margin_value or {}
    keys = set(settle_value) | set(order_value) | set(lockup_value) | set(fundlock) | set(margin_value)
    missing = keys - set(locked or {})
    if missing and behind is not None:
        behind.wait()
    fund_locks = {**(locked or {}), **(fund_locks_lock(keys=missing) if missing else {})}
    for key in sorted(keys):
        fund_lock = fund_locks[key]
        fund_lock.fundlock += fundlock.get(key, Decimal(0))
        fund_lock.settle_value += settle_value.get(key, Decimal(0))
        fund_lock.order_value += order_value.get(key, Decimal(0))
        fund_lock.lockup_value += lockup_value.get(key, Decimal(0))
        fund_lock.margin_value += margin_value.get(key, Decimal(0))
        fund_lock.updated_at = now
    rows, fields = [fund_locks[k] for k in sorted(keys)], _ADJUSTED
    if rows and len(rows) <= FEW_ROWS:  # a write ``behind`` may send with the caller's others (``Behind.write``)
        write_held(behind, bulk_update_write(FundLock, rows, fields))
    else:
        write_behind(behind, functools.partial(bulk_update_rows, FundLock, rows, fields))
    return {key: fund_locks[key] for key in sorted(keys)}


def balance_events(fund_locks: Iterable[FundLock]) -> list[tuple[int, dict]]:
    """The private stream's balance event of each fund lock, with its client id: the one place the
    event is built, as ``BalanceSerializer`` renders a balance, built directly (a serializer costs about
    a millisecond a call, as much as the rest of a continuous matcher's small batch)."""
    return [(fund_lock.client_id, {"type": "balance", "balance": {
        "currency": fund_lock.currency.symbol, "fundlock": money_str(fund_lock.fundlock),
        "settle_value": money_str(fund_lock.settle_value), "order_value": money_str(fund_lock.order_value),
        "lockups": money_str(fund_lock.lockup_value), "margin": money_str(fund_lock.margin_value),
        "available": money_str(fund_lock.available),
        "updated_at": iso_utc(fund_lock.updated_at)}}) for fund_lock in fund_locks]


def balances_publish(fund_locks: Iterable[FundLock]) -> None:
    """Push each fund lock's balance to its client's private stream once the transaction commits."""
    client_stream_publish_many(balance_events(fund_locks))
