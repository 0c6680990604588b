"""Throttles: fixed-window request counters in Redis, shared by every process of the clearing house.

A rate is ``"<count>/<window>"`` with the window ``s``, ``min``, ``h`` or ``d``, optionally with a
multiple (``"10/5min"``); an empty rate turns that throttle off. A refused request gets 429
``throttled`` with ``Retry-After`` (seconds until its window ends). Counting is one atomic Redis
round trip (INCR, then EXPIRE on the window's first hit); a client's order entry or withdrawal count rides
with the API token's revocation epoch read when its token is served from the process's cache
(``ClientThrottle``). When Redis cannot be reached the request is let through and a warning logged: a
throttle must not take the clearing house down with it.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import JsonResponse
from rest_framework import exceptions
from rest_framework.permissions import IsAuthenticated
from rest_framework.throttling import BaseThrottle

from ccp.errors import error_body
from ccp.redisheld import Commands, round_trip

logger = logging.getLogger(__name__)

_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|min|h|d)\s*$")


@dataclass(frozen=True)
class Rate:
    count: int
    window_s: int

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``"50/s"`` -> Rate(50, 1); ``""`` -> None (no throttle); ValueError otherwise."""
        if not text.strip():
            return None
        match = _RATE.match(text)
        if not match:
            raise ValueError(f"throttle rate {text!r}: use <count>/<window>, e.g. 50/s, 10/5min")
        return cls(int(match[1]), int(match[2] or 1) * _UNITS[match[3]])


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.CCP_THROTTLE_REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)


def _window(rate: Rate, now: float) -> tuple[int, float]:
    """(index of the window ``now`` is in, seconds until it ends)."""
    index = int(now // rate.window_s)
    return index, (index + 1) * rate.window_s - now


def _key(scope: str, identity: str, rate: Rate, index: int) -> str:
    return f"ccp:throttle:{scope}:{identity}:{rate.window_s}:{index}"


def hit(scope: str, identity: str, rate: Rate, *, now: float | None = None, count: bool = True) -> float | None:
    """Count one request of ``identity`` (or only look, with ``count=False``); the seconds to wait
    when it is over ``rate``, None when it may go on."""
    if count:
        allowed, left_s = hits(scope, identity, rate, 1, now=now)
        return None if allowed else left_s
    now = time.time() if now is None else now
    index, left_s = _window(rate, now)
    try:
        used = int(_redis().get(_key(scope, identity, rate, index)) or 0) + 1
    except redis.RedisError as exc:
        logger.warning("throttle %s not checked, Redis unreachable: %s", scope, exc)
        return None
    return left_s if used > rate.count else None


def hits(scope: str, identity: str, rate: Rate, cost: int, *, now: float | None = None) -> tuple[int, float]:
    """Count ``cost`` requests of ``identity`` at once (a batch of orders): how many of them, the
    first ones, are within ``rate``, and the seconds until the window ends."""
    now = time.time() if now is None else now
    index, left_s = _window(rate, now)
    key = _key(scope, identity, rate, index)
    commands = Commands()
    commands.execute_command("MULTI").incrby(key, cost).expire(key, rate.window_s + 1, nx=True)
    commands.execute_command("EXEC")
    try:  # one transaction, as a pipeline sends it, on this thread's own connection (ccp.redisheld)
        *_, done = round_trip(_redis(), commands.stack)
        used = done if isinstance(done, Exception) else done[0]
        if isinstance(used, Exception):  # the transaction's failure, or its INCRBY's
            raise used
    except redis.RedisError as exc:
        logger.warning("throttle %s not checked, Redis unreachable: %s", scope, exc)
        return cost, left_s
    return _within(rate, cost, used), left_s


def _within(rate: Rate, cost: int, used: int) -> int:
    """How many of ``cost`` requests just counted, the first ones, are within ``rate`` (``used``: the count now)."""
    return max(0, min(cost, rate.count - (used - cost)))


@dataclass
class Count:
    """One request of a client throttle's counter, to be counted in another Redis round trip (the API token's
    epoch read: ``ccp.accounts.services.api_token_authenticate``): the key and expiry ``hits`` would use."""

    scope: str
    identity: str
    rate: Rate
    key: str
    expire_s: int
    left_s: float
    used: int | None = None  # the counter with this request, once counted; None: not counted

    @classmethod
    def of(cls, scope: str, identity: str, rate: Rate, *, now: float | None = None) -> Count:
        index, left_s = _window(rate, time.time() if now is None else now)
        return cls(scope, identity, rate, _key(scope, identity, rate, index), rate.window_s + 1, left_s)


def rate_of(setting: str) -> Rate | None:
    return _rate(getattr(settings, setting))


@cache
def _rate(text: str) -> Rate | None:
    """``Rate.parse``, once per text: a client throttle reads its rate twice a request."""
    return Rate.parse(text)


def client_ip(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


class WindowThrottle(BaseThrottle):
    """A DRF throttle over one or more (scope, rate setting, identity) counters; every counter of the
    request is counted, the longest wait wins."""

    def counters(self, request, view) -> list[tuple[str, str, str]]:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        waits = []
        for scope, setting, identity in self.counters(request, view):
            rate = rate_of(setting)
            if rate is not None and identity and (wait := hit(scope, identity, rate)) is not None:
                waits.append(wait)
        self.wait_s = max(waits) if waits else None
        return not waits

    def wait(self) -> float | None:
        return self.wait_s


class SignInThrottle(WindowThrottle):
    """Sign-in (nonce and token), per IP address."""

    def counters(self, request, view):
        return [("signin-ip", "CCP_THROTTLE_SIGNIN_IP", client_ip(request))]


def throttle(scope: str, setting: str, identity: str) -> None:
    """Count a request of ``identity`` and raise DRF's Throttled (429, Retry-After) when it is over
    the rate: for counters known only once the body is read (a wallet address)."""
    rate = rate_of(setting)
    if rate is not None and (wait := hit(scope, identity, rate)) is not None:
        raise exceptions.Throttled(wait)


class ClientThrottle(WindowThrottle):
    """POST requests per client (``scope``, its rate in the setting ``setting``). Counted with the API token's
    revocation epoch, in its round trip, when the view has this throttle alone and asks only that the client
    is signed in (``client_count``: nothing can refuse such a request between its authentication and its
    throttle); else counted here."""

    scope: str
    setting: str

    def counters(self, request, view):
        return [(self.scope, self.setting, str(request.user.pk))] if request.method == "POST" else []

    def allow_request(self, request, view) -> bool:
        counted = getattr(request, "ccp_counted", None)
        if counted is None or counted.used is None or (counted.scope, counted.identity, counted.rate) != (
                self.scope, str(request.user.pk), rate_of(self.setting)):
            return super().allow_request(request, view)
        self.wait_s = None if _within(counted.rate, 1, counted.used) else counted.left_s
        return self.wait_s is None


def client_count(request) -> Callable[[int], Count] | None:
    """For a POST to a view whose one throttle is a ``ClientThrottle`` (its rate on) and whose one permission is
    IsAuthenticated: a function that, given the authenticated client's id, makes the request's ``Count`` (kept on
    the request as ``ccp_counted`` for the throttle); None for any other request."""
    view = request.parser_context.get("view") if request.method == "POST" else None
    kind = type(view)
    if view is None or kind.get_throttles.__qualname__ != "APIView.get_throttles" or \
            kind.get_permissions.__qualname__ != "APIView.get_permissions":  # its classes: what DRF checks
        return None
    throttles, permissions = view.throttle_classes, view.permission_classes
    if len(throttles) != 1 or not issubclass(throttles[0], ClientThrottle) or list(permissions) != [IsAuthenticated]:
        return None
    scope, rate = throttles[0].scope, rate_of(throttles[0].setting)
    if rate is None:
        return None

    def count(client_id: int) -> Count:
        request.ccp_counted = Count.of(scope, str(client_id), rate)
        return request.ccp_counted

    return count


class OrderEntryThrottle(ClientThrottle):
    """Order entry and cancels, per client."""

    scope, setting = "orders", "CCP_THROTTLE_ORDERS"


def order_entries_allowed(client_id: int, orders: int) -> tuple[int, float]:
    """A batch of ``orders`` counted by the order entry throttle, one each: how many of them (the
    first ones) may go on, and the seconds until the window ends."""
    rate = rate_of("CCP_THROTTLE_ORDERS")
    return (orders, 0.0) if rate is None else hits("orders", str(client_id), rate, orders)


class WithdrawalThrottle(ClientThrottle):
    """Withdrawal requests, per client."""

    scope, setting = "withdrawals", "CCP_THROTTLE_WITHDRAWALS"


# The admin login: attempts per IP address, failures per user name (a lockout that holds whichever
# addresses an attacker uses).
ADMIN_LOGIN_PATH = "/admin/login/"


def admin_login_throttle(get_response):
    """Middleware: a POST to the admin login over either limit gets 429 with Retry-After."""

    def middleware(request):
        if request.method == "POST" and request.path == ADMIN_LOGIN_PATH:
            waits = []
            if (rate := rate_of("CCP_THROTTLE_ADMIN_LOGIN_IP")) is not None:
                waits.append(hit("admin-login-ip", client_ip(request), rate))
            username = request.POST.get("username", "")[:150]
            if username and (rate := rate_of("CCP_THROTTLE_ADMIN_LOGIN_USER")) is not None:
                waits.append(hit("admin-login-user", username.lower(), rate, count=False))
            if wait := max(filter(None, waits), default=None):
                retry_after = max(1, math.ceil(wait))
                response = JsonResponse(error_body("throttled", "Too many sign-in attempts: try again later.",
                                                   {"retry_after_s": retry_after}), status=429)
                response["Retry-After"] = str(retry_after)
                return response
        return get_response(request)

    return middleware


@receiver(user_login_failed)
def _admin_login_failed(sender, credentials, request=None, **kwargs) -> None:
    username = str(credentials.get("username") or "")[:150]
    if username and (rate := rate_of("CCP_THROTTLE_ADMIN_LOGIN_USER")) is not None:
        hit("admin-login-user", username.lower(), rate)
