"""A small market for the demo: simulated traders who deposit, sign in over the real API with their
wallets and keep sending limit orders around a fair value, so auctions clear in the logs and the admin.

    manage.py ccp_simulate --url http://127.0.0.1:8000 --traders 6 --interval 2

With a chain configured (bin/run starts anvil and deploys FundLock) traders deposit on chain and the
deposit monitor credits them; without one, deposits credit the fund lock directly.
"""

import collections
import hashlib
import json
import logging
import random
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from eth_account import Account
from eth_account.messages import encode_defunct

from ccp.accounts.models import FundLock
from ccp.accounts.services import client_register, fund_lock_credit
from ccp.clock import utcnow
from ccp.contracts.models import Currency
from ccp.settlement.chain.artifacts import load_artifact
from ccp.settlement.chain.connect import operator_account, web3_for
from ccp.settlement.models import ChainContract
from ccp.settlement.services import operator_nonce_take, token_units

logger = logging.getLogger("ccp.simulator")
MAX_RESTING = 40  # orders a simulated trader keeps; it cancels its oldest beyond that
SPOT = {"BTC": Decimal(100000), "ETH": Decimal(3500)}  # notional spot for fair values until prices land
TOP_UP_BELOW, TOP_UP = Decimal(200000), Decimal(1000000)


def fair_value(contract: dict, spot: Decimal) -> Decimal:
    days = max((datetime.fromisoformat(contract["expires_at"].replace("Z", "+00:00")) - datetime.now(UTC)).days, 1)
    time_value = spot * Decimal("0.02") * (Decimal(days) / 365).sqrt()
    if contract["kind"] == "future":
        return spot  # a future is quoted as the underlying's price (its premium, price - floor, is prepaid)
    strike = Decimal(contract["strike_px"])
    intrinsic = max(spot - strike, 0) if contract["kind"] == "call" else max(strike - spot, 0)
    return intrinsic + time_value


class Trader:
    def __init__(self, base_url: str, n: int) -> None:
        self.base_url = base_url
        # Deterministic demo wallets: the same traders on every run.
        self.account = Account.from_key(hashlib.sha256(f"ccp-simulated-trader-{n}".encode()).digest())
        self.token = ""
        self.sent = 0
        self.resting: collections.deque[int] = collections.deque()  # ids of its orders, oldest first

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(self.base_url + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {self.token}"} if self.token else {})})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def sign_in(self) -> None:
        _, challenge = self.call("POST", "/api/v1/auth/nonce", {"address": self.account.address})
        signature = self.account.sign_message(encode_defunct(text=challenge["message"])).signature.to_0x_hex()
        _, token = self.call("POST", "/api/v1/auth/token", {"message": challenge["message"], "signature": signature})
        self.token = token["token"]


class Command(BaseCommand):
    help = "Run simulated traders against the served API (demo)."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--traders", type=int, default=6)
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between rounds of orders")
        parser.add_argument("--rounds", type=int, default=0, help="stop after this many rounds (0: run until killed)")
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, url, traders, interval, rounds, seed, **options):
        rng = random.Random(seed)
        self._wait_for(url)
        usdc = Currency.objects.get(symbol="USDC")
        crowd = [Trader(url, n) for n in range(traders)]
        fund_lock = ChainContract.objects.filter(name="FundLock").first()
        for trader in crowd:
            held = FundLock.objects.filter(client__address=trader.account.address.lower(), currency=usdc).first()
            if held is None or held.fundlock < TOP_UP_BELOW:
                if settings.CCP_CHAIN_URL and fund_lock and usdc.token_address:
                    self._deposit_on_chain(trader, usdc, fund_lock.address)
                else:
                    client = client_register(address=trader.account.address, now=utcnow())
                    fund_lock_credit(client=client, currency=usdc, amount=TOP_UP, now=utcnow())
                    logger.info("simulated deposit (no chain): %s USDC for %s", TOP_UP, trader.account.address)
        self._wait_for_clients(crowd, usdc)
        for trader in crowd:
            trader.sign_in()
        logger.info("%d simulated traders signed in over the API", len(crowd))
        done = 0
        while rounds == 0 or done < rounds:
            _, listing = crowd[0].call("GET", "/api/v1/contracts?state=listed&limit=200")
            contracts = [c for c in listing.get("results", []) if
                         datetime.fromisoformat(c["trading_ends_at"].replace("Z", "+00:00")) > datetime.now(UTC)]
            for trader in crowd:
                if contracts:
                    self._send_order(trader, rng.choice(contracts), rng)
            done += 1
            time.sleep(interval)

    def _deposit_on_chain(self, trader: Trader, usdc: Currency, fund_lock_address: str) -> None:
        """Fund the wallet with gas (anvil), mint demo USDC to it and deposit it into FundLock."""
        w3 = web3_for(settings.CCP_CHAIN_URL)
        w3.provider.make_request("anvil_setBalance", [trader.account.address, hex(10**20)])
        operator = operator_account(settings.CCP_CHAIN_OPERATOR_KEY)
        token = w3.eth.contract(address=w3.to_checksum_address(usdc.token_address),
                                abi=load_artifact("TestToken")["abi"])
        fund_lock = w3.eth.contract(address=w3.to_checksum_address(fund_lock_address),
                                    abi=load_artifact("FundLock")["abi"])
        units = token_units(TOP_UP, usdc.decimals)
        for signer, call in ((operator, token.functions.mint(trader.account.address, units)),
                             (trader.account, token.functions.approve(fund_lock.address, units)),
                             (trader.account, fund_lock.functions.deposit(token.address, units))):
            if signer is operator:  # settlement sends from this account too: one nonce sequence for both
                with transaction.atomic():
                    nonce = operator_nonce_take(address=operator.address.lower(), w3=w3)
            else:
                nonce = w3.eth.get_transaction_count(signer.address, "pending")
            tx = call.build_transaction({"from": signer.address, "nonce": nonce, "gas": 200_000,
                                         "gasPrice": w3.eth.gas_price})
            w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(
                signer.sign_transaction(tx).raw_transaction), timeout=30)
        logger.info("deposited %s USDC on chain for %s", TOP_UP, trader.account.address)

    def _wait_for_clients(self, crowd: list[Trader], usdc: Currency, timeout_s: float = 120) -> None:
        """Until the deposit monitor (beat) has credited every trader: sign-in needs a registered client."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            credited = FundLock.objects.filter(currency=usdc, fundlock__gte=TOP_UP_BELOW, client__address__in=[
                t.account.address.lower() for t in crowd]).count()
            if credited == len(crowd):
                return
            time.sleep(1)
        raise SystemExit("the deposit monitor did not credit the simulated traders in time")

    def _send_order(self, trader: Trader, contract: dict, rng: random.Random) -> None:
        spot = SPOT.get(contract["underlying"].split("/")[0], Decimal(100))
        tick, lot = Decimal(contract["tick_size"]), Decimal(contract["lot_size"])
        side = rng.choice(["buy", "sell"])
        fair = fair_value(contract, spot)
        skew = Decimal(rng.gauss(0, 0.03)) * fair + (fair * Decimal("-0.01") if side == "buy" else fair / 100)
        low, high = Decimal(contract["price_min"]), Decimal(contract["price_max"])
        price = min(max(((fair + skew) / tick).quantize(Decimal(1)) * tick, low + tick), high - tick)
        quantity = lot * rng.randint(1, 10)
        trader.sent += 1
        body = {"client_order_id": f"sim-{int(time.time() * 1000)}-{trader.sent}", "contract": contract["symbol"],
                "side": side, "price": format(price, "f"), "quantity": format(quantity, "f")}
        status, order = trader.call("POST", "/api/v1/orders", body)
        if status == 401:  # the token expired (CCP_API_TOKEN_TTL): sign in again, send the same order once more
            trader.sign_in()
            status, order = trader.call("POST", "/api/v1/orders", body)
        logger.info("%s %s %s %s @ %s -> %s %s", trader.account.address[:10], side, quantity, contract["symbol"],
                    price, status, order.get("state") or order.get("code"))
        if status == 202:
            trader.resting.append(order["id"])
        # Like a market maker requoting: the oldest quotes go, so the book stays fresh and no wallet
        # runs into the open-order cap (an order filled meanwhile answers order_not_open: fine).
        while len(trader.resting) > MAX_RESTING:
            trader.call("POST", f"/api/v1/orders/{trader.resting.popleft()}/cancel")

    def _wait_for(self, url: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/api/v1/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"the API at {url} did not answer within {timeout_s:.0f} s")
