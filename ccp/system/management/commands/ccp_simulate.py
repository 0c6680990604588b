"""A small market for the demo: simulated traders who deposit, sign in over the real API with their
wallets (through the client package, client/) and keep a few quotes around each contract's mark price,
so auctions clear in the logs and the admin.

    manage.py ccp_simulate --url http://127.0.0.1:8000 --traders 6 --interval 2

Quotes: a future around its mark (the index clamped to its bounds), an option around its mark (its
intrinsic value at the index) plus a small time value; without a fresh index, around the contract's
reference price, else a notional spot. Each trader keeps at most MAX_RESTING open orders: before each
new one it cancels those further than STALE_FRACTION from their contract's fair value, then its
oldest, so the book stays bounded (traders x MAX_RESTING orders) and close to the mark. On start it
reads its open orders back from the API, so a restarted simulator cancels what it left.

With a chain configured (bin/run starts anvil and deploys FundLock) traders deposit on chain and the
deposit monitor credits them; without one, deposits credit the fund lock directly.

``--bound-share 0.3`` makes that share of the traders (the first ones) collateral-bound: they deposit
BOUND_TOP_UP instead of TOP_UP, and where they hold a position they quote its reducing side for one or
two times its size (closing, or closing and reversing): each such order nets against the same position
at entry and holds little, so together they ask for more than the trader's free collateral and the
auction's budget binds (``ccp.matching.services``); with no position they sell BOUND_LOTS lots, which
entry refuses once the collateral is spent.
"""

import argparse
import hashlib
import logging
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from ccp.accounts.models import FundLock
from ccp.accounts.services import client_register, fund_lock_credit
from ccp.clock import utcnow
from ccp.contracts.models import Currency
from ccp.settlement.chain.artifacts import load_artifact
from ccp.settlement.chain.connect import operator_account, web3_for
from ccp.settlement.services import operator_nonce_take, token_units

sys.path.insert(0, str(settings.BASE_DIR / "client"))  # the client package by path: not installed in .venv
from ccp_client import ApiError, Client  # noqa: E402

logger = logging.getLogger("ccp.simulator")
MAX_RESTING = 20  # open orders a simulated trader keeps
STALE_FRACTION = Decimal("0.05")  # an order further than this from its contract's fair value is cancelled
SPREAD = Decimal("0.005")  # buys quote this fraction below fair value, sells above, plus noise
NOISE = 0.01  # standard deviation of a quote's distance from fair value, as a fraction of it
TIME_VALUE = Decimal("0.02")  # an option's time value: this fraction of the index per sqrt(year)
SPOT = {"BTC": Decimal(100000), "ETH": Decimal(3500)}  # notional spot while there is no index
TOP_UP_BELOW, TOP_UP = Decimal(200000), Decimal(1000000)
RESYNC_ROUNDS = 10  # every this many rounds a trader re-reads its open orders (fills and cancels elsewhere)
BOUND_TOP_UP = Decimal(20000)  # what a collateral-bound trader deposits (topped up below half of it)
BOUND_LOTS = (5, 20)  # lots a bound trader sells where it holds no position


@dataclass(frozen=True)
class Resting:
    order_id: int
    contract: str
    price: Decimal


def fair_value(contract: dict, *, now: datetime) -> Decimal:
    """Where a contract's quotes centre: its mark price (a future: the index clamped to its bounds; an
    option: intrinsic value at the index) plus, for an option, a small time value."""
    spot = contract["index_price"] or SPOT.get(contract["underlying"].split("/")[0])
    if contract["kind"] == "future":
        mark = contract["mark_price"] or contract["reference_price"] or spot
        return min(max(mark, contract["floor_px"]), contract["cap_px"])
    if spot is None:
        return contract["reference_price"] or (contract["price_min"] + contract["price_max"]) / 2
    strike = contract["strike_px"]
    intrinsic = contract["mark_price"]
    if intrinsic is None:
        intrinsic = max(spot - strike, 0) if contract["kind"] == "call" else max(strike - spot, 0)
    expires_at = datetime.fromisoformat(contract["expires_at"].replace("Z", "+00:00"))
    years = Decimal(max((expires_at - now).total_seconds(), 0)) / Decimal(365 * 86400)
    return intrinsic + spot * TIME_VALUE * years.sqrt()


def quote_price(contract: dict, fair: Decimal, side: str, rng: random.Random) -> Decimal:
    """A limit price around ``fair``: below it for a buy, above for a sell, with noise (so some cross),
    on the tick grid and inside the contract's price range."""
    offset = -SPREAD if side == "buy" else SPREAD
    raw = fair * (1 + offset + Decimal(str(round(rng.gauss(0, NOISE), 6))))
    tick = contract["tick_size"]
    return min(max((raw / tick).to_integral_value() * tick, contract["price_min"]), contract["price_max"])


def orders_to_cancel(resting: list[Resting], fair: dict[str, Decimal]) -> list[int]:
    """Which of a trader's open orders (oldest first) go: those on a contract no longer quoted or
    further than STALE_FRACTION from its fair value, then the oldest beyond MAX_RESTING - 1 (room for
    the next order)."""
    stale = [r.order_id for r in resting
             if r.contract not in fair or abs(r.price - fair[r.contract]) > STALE_FRACTION * fair[r.contract]]
    kept = [r.order_id for r in resting if r.order_id not in stale]
    return stale + kept[:max(len(kept) - (MAX_RESTING - 1), 0)]


def share_of_traders(text: str) -> Decimal:
    """``--bound-share``: a number from 0 to 1 (as bin/run checks ``CCP_SIMULATOR_BOUND_SHARE``)."""
    try:
        share = Decimal(text.strip())
    except InvalidOperation:
        share = None
    if share is None or not share.is_finite() or not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {text!r}")
    return share


def bound_traders(count: int, share: Decimal | float) -> set[int]:
    """Which traders (by number) are collateral-bound: the first ``share`` of them, rounded."""
    return set(range(min(count, round(count * share))))


def bound_order(contract: dict, position: Decimal, rng: random.Random) -> tuple[str, Decimal]:
    """A bound trader's order (side, quantity) on ``contract`` where it holds ``position`` (signed): its
    reducing side for one or two times the position (netted at entry, together more than it has), else a
    sale of BOUND_LOTS lots."""
    if position:
        return ("sell" if position > 0 else "buy"), abs(position) * rng.choice([1, 2])
    return "sell", contract["lot_size"] * rng.randint(*BOUND_LOTS)


class Trader:
    def __init__(self, base_url: str, n: int, *, bound: bool = False) -> None:
        # Deterministic demo wallets: the same traders on every run.
        key = hashlib.sha256(f"ccp-simulated-trader-{n}".encode()).digest()
        self.client = Client(base_url, key, rpc_url=settings.CCP_CHAIN_URL or None)
        self.resting: list[Resting] = []  # its open orders, oldest first
        self.bound = bound  # collateral-bound: a small deposit, orders netted against its positions

    @property
    def address(self) -> str:
        return self.client.address

    def reread(self) -> None:
        """Its open orders as the API has them (fills and cancels happen elsewhere)."""
        self.resting = sorted((Resting(o["id"], o["contract"], o["price"]) for o in self.client.open_orders()),
                              key=lambda r: r.order_id)

    def trim(self, fair: dict[str, Decimal]) -> int:
        """Cancel stale and excess orders; returns how many it cancelled."""
        going = orders_to_cancel(self.resting, fair)
        for order_id in going:
            try:
                self.client.cancel_order(order_id)
            except ApiError as refused:  # filled or cancelled meanwhile (order_not_open): gone anyway
                logger.debug("cancel %s: %s", order_id, refused.code)
        self.resting = [r for r in self.resting if r.order_id not in going]
        return len(going)


class Command(BaseCommand):
    help = "Run simulated traders against the served API (demo)."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--traders", type=int, default=6)
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between rounds of orders")
        parser.add_argument("--rounds", type=int, default=0, help="stop after this many rounds (0: run until killed)")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--bound-share", type=share_of_traders, default=Decimal(0),
                            help="share of the traders whose collateral binds in auctions (0 to 1)")

    def handle(self, *args, url, traders, interval, rounds, seed, bound_share=Decimal(0), **options):
        rng = random.Random(seed)
        self._wait_for(url)
        usdc = Currency.objects.get(symbol="USDC")
        bound = bound_traders(traders, bound_share)
        crowd = [Trader(url, n, bound=n in bound) for n in range(traders)]
        for trader in crowd:
            held = FundLock.objects.filter(client__address=trader.address.lower(), currency=usdc).first()
            amount = BOUND_TOP_UP if trader.bound else TOP_UP
            if held is None or held.fundlock < (amount / 2 if trader.bound else TOP_UP_BELOW):
                if crowd[0].client.chain()["configured"] and settings.CCP_CHAIN_URL:
                    self._deposit_on_chain(trader, usdc, amount)
                else:
                    client = client_register(address=trader.address, now=utcnow())
                    fund_lock_credit(client=client, currency=usdc, amount=amount, now=utcnow())
                    logger.info("simulated deposit (no chain): %s USDC for %s", amount, trader.address)
        for trader in crowd:
            trader.client.sign_in(wait_s=120)  # once the deposit monitor has credited it
            trader.reread()
        logger.info("%d simulated traders signed in over the API", len(crowd))
        done = 0
        while rounds == 0 or done < rounds:
            try:
                self._round(crowd, rng, reread=done % RESYNC_ROUNDS == RESYNC_ROUNDS - 1)
            except (ApiError, OSError) as failed:  # the server restarting, a throttle: next round
                logger.warning("simulator round failed: %s", failed)
            done += 1
            time.sleep(interval)

    def _round(self, crowd: list[Trader], rng: random.Random, *, reread: bool) -> None:
        now = datetime.now(UTC)
        listed = [c for c in crowd[0].client.contracts(state="listed")
                  if datetime.fromisoformat(c["trading_ends_at"].replace("Z", "+00:00")) > now]
        fair = {c["symbol"]: fair_value(c, now=now) for c in listed}
        for trader in crowd:
            if reread:
                trader.reread()
            cancelled = trader.trim(fair)
            if listed:
                self._send_order(trader, rng.choice(listed), fair, rng, cancelled)

    def _deposit_on_chain(self, trader: Trader, usdc: Currency, amount: Decimal = TOP_UP) -> None:
        """Gas (anvil) and demo USDC minted by the operator, then the trader's own deposit (the client's
        approve + deposit). Not the faucet: it is throttled per IP address."""
        w3 = web3_for(settings.CCP_CHAIN_URL)
        w3.provider.make_request("anvil_setBalance", [trader.address, hex(10**20)])
        operator = operator_account(settings.CCP_CHAIN_OPERATOR_KEY)
        token = w3.eth.contract(address=w3.to_checksum_address(usdc.token_address),
                                abi=load_artifact("TestToken")["abi"])
        with transaction.atomic():  # settlement sends from this account too: one nonce sequence for both
            nonce = operator_nonce_take(address=operator.address.lower(), w3=w3)
        tx = token.functions.mint(trader.address, token_units(amount, usdc.decimals)).build_transaction(
            {"from": operator.address, "nonce": nonce, "gas": 200_000, "gasPrice": w3.eth.gas_price})
        w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(
            operator.sign_transaction(tx).raw_transaction), timeout=30)
        trader.client.deposit(amount, usdc.symbol)
        logger.info("deposited %s USDC on chain for %s", amount, trader.address)

    def _send_order(self, trader: Trader, contract: dict, fair: dict[str, Decimal], rng: random.Random,
                    cancelled: int) -> None:
        if trader.bound:
            held = {p["contract"]: Decimal(str(p["quantity"])) for p in trader.client.positions()}
            side, quantity = bound_order(contract, held.get(contract["symbol"], Decimal(0)), rng)
        else:
            side, quantity = rng.choice(["buy", "sell"]), contract["lot_size"] * rng.randint(1, 10)
        price = quote_price(contract, fair[contract["symbol"]], side, rng)
        try:
            order = trader.client.place_order(contract["symbol"], side, price, quantity)
        except ApiError as refused:
            logger.info("%s %s %s %s @ %s -> %s", trader.address[:10], side, quantity, contract["symbol"], price,
                        refused.code)
            return
        trader.resting.append(Resting(order["id"], contract["symbol"], price))
        logger.info("%s %s %s %s @ %s (fair %s) -> %s; %d resting, %d cancelled", trader.address[:10], side,
                    quantity, contract["symbol"], price, fair[contract["symbol"]].quantize(contract["tick_size"]),
                    order["state"], len(trader.resting), cancelled)

    def _wait_for(self, url: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        probe = Client(url)
        while time.monotonic() < deadline:
            try:
                probe.request("GET", "/api/v1/health", auth=False)
                return
            except (ApiError, OSError):
                time.sleep(0.5)
        raise SystemExit(f"the API at {url} did not answer within {timeout_s:.0f} s")
