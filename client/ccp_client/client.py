"""The REST side of the client: wallet sign-in, deposits on chain, orders, fills, positions, balances."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import requests
from eth_account import Account
from eth_account.messages import encode_defunct

from ccp_client.errors import ApiError
from ccp_client.money import decimals, number_text

RETRY_STATUSES = (429, 503)  # throttled; database unavailable (nothing was committed): safe to send again
OPEN_STATES = ("received", "untriggered", "accepted", "partially_filled")


class Client:
    """One wallet's view of a ccp server.

    ``Client("http://localhost:8000", "0x<private key>", rpc_url="http://127.0.0.1:18545")``: the
    private key signs in (EIP-4361) and, with ``rpc_url`` (the chain's node), signs deposits. Every
    call returns parsed JSON with money as ``Decimal``; a refusal raises ``ApiError``. A 429 or 503 is
    sent again after its ``Retry-After`` (at most ``retries`` times, each wait at most ``max_wait_s``);
    an expired token is renewed by signing in again.
    """

    def __init__(self, base_url: str, private_key: str | bytes | None = None, *, rpc_url: str | None = None,
                 timeout_s: float = 15, retries: int = 4, max_wait_s: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.account = Account.from_key(private_key) if private_key else Account.create()
        self.rpc_url = rpc_url
        self.timeout_s, self.retries, self.max_wait_s = timeout_s, retries, max_wait_s
        self.token: str | None = None
        self.session = requests.Session()
        self._chain: dict | None = None

    def fork(self) -> Client:
        """The same wallet and token with a connection pool of its own (for another thread, e.g. a stream's)."""
        twin = Client(self.base_url, self.account.key, rpc_url=self.rpc_url, timeout_s=self.timeout_s,
                      retries=self.retries, max_wait_s=self.max_wait_s)
        twin.token, twin._chain = self.token, self._chain
        return twin

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http")

    # --- the wire ---

    def request(self, method: str, path: str, *, body: dict | None = None, params: dict | None = None,
                auth: bool = True) -> Any:
        """The parsed answer of ``method path`` (money as Decimal); ``ApiError`` on a refusal."""
        params = {key: value for key, value in (params or {}).items() if value is not None}
        renewed = False
        for attempt in range(self.retries + 1):
            headers = {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}
            response = self.session.request(method, self.base_url + path, json=body, params=params, headers=headers,
                                            timeout=self.timeout_s)
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                time.sleep(self._retry_after(response))
                continue
            expired = response.status_code == 401 and _code(response) == "token_expired"
            if expired and auth and self.token and not renewed:
                renewed = True
                self.sign_in()
                continue
            if response.status_code >= 400:
                raise _error(response)
            return decimals(response.json()) if response.content else None
        raise AssertionError("unreachable")

    def _retry_after(self, response: requests.Response) -> float:
        try:
            wait = float(response.headers.get("Retry-After", "1"))
        except ValueError:
            wait = 1.0
        return min(max(wait, 0.1), self.max_wait_s)

    def _pages(self, path: str, params: dict | None = None, *, auth: bool = True) -> Iterator[dict]:
        """Every item of a limit/offset list, page after page."""
        params, offset = dict(params or {}), 0
        while True:
            page = self.request("GET", path, params={**params, "limit": 1000, "offset": offset or None}, auth=auth)
            yield from page["results"]
            if not page.get("next"):
                return
            offset += len(page["results"])

    def _cursor_pages(self, path: str, params: dict | None = None, *, auth: bool = True) -> Iterator[dict]:
        """Every item of a cursor-paginated list (``next_cursor``), page after page."""
        params = dict(params or {})
        while True:
            page = self.request("GET", path, params=params, auth=auth)
            yield from page["results"]
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    # --- sign-in ---

    def sign_in(self, *, wait_s: float = 0) -> str:
        """Sign the server's EIP-4361 message with the wallet; keeps and returns the API token. Refused
        with ``signin_address_not_registered`` (403) until a deposit of this wallet is credited: with
        ``wait_s`` it tries again every second for that long (a deposit waits for confirmations)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return self._sign_in()
            except ApiError as refused:
                if refused.code != "signin_address_not_registered" or time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def _sign_in(self) -> str:
        challenge = self.request("POST", "/api/v1/auth/nonce", body={"address": self.address}, auth=False)
        signature = self.account.sign_message(encode_defunct(text=challenge["message"])).signature.to_0x_hex()
        issued = self.request("POST", "/api/v1/auth/token", auth=False,
                              body={"message": challenge["message"], "signature": signature})
        self.token = issued["token"]
        return self.token

    def sign_out(self) -> None:
        self.request("POST", "/api/v1/auth/signout")
        self.token = None

    # --- chain: faucet and deposits ---

    def chain(self) -> dict:
        """Chain id, FundLock address and ABI, accepted tokens with decimals (``GET /api/v1/chain``)."""
        if self._chain is None:
            self._chain = self.request("GET", "/api/v1/chain", auth=False)
        return self._chain

    def faucet(self) -> dict:
        """Demo only: demo tokens and gas for this wallet; waits for the mints when ``rpc_url`` is set."""
        gift = self.request("POST", "/api/v1/faucet", body={"address": self.address}, auth=False)
        if self.rpc_url:
            w3 = self._web3()
            for mint in gift["mints"]:
                w3.eth.wait_for_transaction_receipt(mint["tx_hash"], timeout=120)
        return gift

    def deposit(self, amount: Decimal | int | str, token: str = "USDC", *, timeout_s: float = 120) -> str:
        """Approve FundLock for ``amount`` of ``token`` and deposit it, from this wallet, waiting for both
        receipts; returns the deposit's transaction hash. The server credits it after ``confirmations``
        blocks (``balances()`` shows it; sign-in works from then on)."""
        info = self.chain()
        if not info["configured"]:
            raise ApiError(409, "chain_not_configured", "The server watches no chain.")
        listed = {t["symbol"]: t for t in info["tokens"]}
        if token not in listed:
            raise ApiError(400, "unknown_currency", f"{token} is not accepted; tokens: {sorted(listed)}")
        w3 = self._web3()
        if w3.eth.chain_id != info["chain_id"]:
            raise ValueError(f"rpc_url is chain {w3.eth.chain_id}, the server watches chain {info['chain_id']}")
        units = int(Decimal(number_text(amount)).scaleb(listed[token]["decimals"]))
        if units <= 0 or Decimal(units).scaleb(-listed[token]["decimals"]) != Decimal(number_text(amount)):
            raise ValueError(f"{amount} is not a positive amount of {token} ({listed[token]['decimals']} decimals)")
        erc20 = w3.eth.contract(address=listed[token]["address"], abi=info["token_abi"])
        fund_lock = w3.eth.contract(address=info["fund_lock_address"], abi=info["fund_lock_abi"])
        receipt = None
        for call in (erc20.functions.approve(fund_lock.address, units),
                     fund_lock.functions.deposit(erc20.address, units)):
            tx = call.build_transaction({"from": self.address, "chainId": info["chain_id"], "gas": 200_000,
                                         "gasPrice": w3.eth.gas_price,
                                         "nonce": w3.eth.get_transaction_count(self.address, "pending")})
            sent = w3.eth.send_raw_transaction(self.account.sign_transaction(tx).raw_transaction)
            receipt = w3.eth.wait_for_transaction_receipt(sent, timeout=timeout_s)
            if receipt.status != 1:
                raise ApiError(409, "transaction_failed", f"{call.fn_name} reverted", {"tx_hash": sent.to_0x_hex()})
        return receipt.transactionHash.to_0x_hex()

    def _web3(self):
        from web3 import Web3  # only deposits need it: importing web3 takes a second

        if not self.rpc_url:
            raise ValueError("deposits need the chain's node: Client(..., rpc_url=...)")
        return Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": self.timeout_s}))

    # --- trading ---

    def place_order(self, contract: str, side: str, price: Decimal | int | str, quantity: Decimal | int | str,
                    client_order_id: str | None = None, *, kind: str = "limit", **terms) -> dict:
        """An order (a limit order; on a continuous contract also ``kind="market"`` with ``price`` its
        protection price, and the terms of ``POST /orders``: ``time_in_force``, ``reduce_only``,
        ``self_trade_prevention``, ``trigger``/``trigger_price``/``trigger_source``, ``take_profit`` and
        ``stop_loss`` dicts); answered as validated or matched within the server's wait, or ``received``
        (watch ``order(id)`` or the private stream). Sending the same ``client_order_id`` again returns the
        stored order, so a retry after a lost answer places nothing twice."""
        body = {"client_order_id": client_order_id or f"py-{time.time_ns()}", "contract": contract, "side": side,
                "kind": kind, "price": number_text(price), "quantity": number_text(quantity)}
        for name, value in terms.items():
            if name == "trigger_price":
                value = number_text(value)
            elif name in ("take_profit", "stop_loss"):
                value = {k: number_text(v) if k in ("trigger_price", "price") else v for k, v in value.items()}
            body[name] = value
        return self.request("POST", "/api/v1/orders", body=body)

    def cancel_order(self, order_id: int) -> dict:
        return self.request("POST", f"/api/v1/orders/{int(order_id)}/cancel")

    def modify_order(self, order_id: int, *, price: Decimal | int | str | None = None,
                     quantity: Decimal | int | str | None = None) -> dict:
        """A resting order's new price and/or total size (continuous contracts)."""
        body = {name: number_text(value) for name, value in (("price", price), ("quantity", quantity))
                if value is not None}
        return self.request("POST", f"/api/v1/orders/{int(order_id)}/modify", body=body)

    def cancel_all(self, *, contract: str | None = None, side: str | None = None) -> list[dict]:
        body = {name: value for name, value in (("contract", contract), ("side", side)) if value is not None}
        return self.request("POST", "/api/v1/orders/cancel-all", body=body)["orders"]

    def close_position(self, contract: str, protection_price: Decimal | int | str,
                       client_order_id: str | None = None) -> dict:
        """A reduce-only market order for your whole position (continuous contracts)."""
        return self.request("POST", "/api/v1/orders/close", body={
            "client_order_id": client_order_id or f"py-close-{time.time_ns()}", "contract": contract,
            "price": number_text(protection_price)})

    def order(self, order_id: int) -> dict:
        """One order with its state history and its fills."""
        return self.request("GET", f"/api/v1/orders/{int(order_id)}")

    def orders(self, *, state: str | None = None, contract: str | None = None) -> list[dict]:
        return list(self._pages("/api/v1/orders", {"state": state, "contract": contract}))

    def open_orders(self, *, contract: str | None = None) -> list[dict]:
        return [order for state in OPEN_STATES for order in self.orders(state=state, contract=contract)]

    def fills(self, *, contract: str | None = None, order: int | None = None,
              since: datetime | str | None = None) -> Iterator[dict]:
        """Your fills, newest first, across every cursor page; ``since``: an aware datetime or ISO 8601."""
        if isinstance(since, datetime):
            since = since.isoformat()
        return self._cursor_pages("/api/v1/fills", {"contract": contract, "order": order, "since": since})

    def positions(self) -> list[dict]:
        """Your open positions, as the server sends them (fields are read by name, none assumed)."""
        return list(self._pages("/api/v1/positions"))

    def balances(self) -> list[dict]:
        return self.request("GET", "/api/v1/balances")

    def balance(self, currency: str = "USDC") -> dict | None:
        return next((b for b in self.balances() if b["currency"] == currency), None)

    def statement(self) -> list[dict]:
        return self.request("GET", "/api/v1/statement")

    def lockups(self) -> list[dict]:
        return list(self._pages("/api/v1/lockups"))

    def withdraw(self, amount: Decimal | int | str, currency: str = "USDC", client_withdrawal_id: str | None = None):
        return self.request("POST", "/api/v1/withdrawals", body={
            "client_withdrawal_id": client_withdrawal_id or f"py-{time.time_ns()}", "currency": currency,
            "amount": number_text(amount)})

    # --- market data (public) ---

    def contracts(self, **filters: str) -> list[dict]:
        """Contracts; filters ``underlying``, ``expiry``, ``kind``, ``state``."""
        return list(self._pages("/api/v1/contracts", filters, auth=False))

    def contract(self, symbol: str) -> dict:
        return self.request("GET", f"/api/v1/contracts/{symbol}", auth=False)

    def book(self, symbol: str) -> dict:
        """The book by price level with the stream's ``sequence`` it matches."""
        return self.request("GET", f"/api/v1/contracts/{symbol}/book", auth=False)

    def index(self) -> list[dict]:
        return self.request("GET", "/api/v1/index", auth=False)

    def trades(self, symbol: str) -> Iterator[dict]:
        """A contract's public trades, newest first, across every cursor page."""
        return self._cursor_pages(f"/api/v1/contracts/{symbol}/trades", auth=False)

    def trades_after(self, symbol: str, sequence: int) -> list[dict]:
        """The public trades after ``sequence``, oldest first (``?after_sequence=``): a trade stream's re-sync."""
        found = list(self._cursor_pages(f"/api/v1/contracts/{symbol}/trades", {"after_sequence": sequence},
                                        auth=False))
        return sorted(found, key=lambda trade: trade["sequence"])


def _code(response: requests.Response) -> str | None:
    try:
        return response.json().get("code")
    except ValueError:
        return None


def _error(response: requests.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiError(response.status_code, body.get("code") or f"http_{response.status_code}",
                    body.get("message") or response.reason or "", body.get("extra") or {})
