"""From a fresh key to a first fill, against the demo stack (bin/run): two new wallets get demo USDC,
deposit it, sign in, and cross on a BTC future in the next auction.

    .venv/bin/python client/examples/quickstart.py    # CCP_URL, CCP_RPC_URL: another server or node
"""

import os
import time
from decimal import Decimal

from ccp_client import Client
from eth_account import Account

API = os.environ.get("CCP_URL", "http://localhost:8000")
RPC = os.environ.get("CCP_RPC_URL", "http://127.0.0.1:18545")  # bin/run's anvil


def new_trader() -> Client:
    trader = Client(API, Account.create().key, rpc_url=RPC)  # a fresh wallet
    trader.faucet()  # demo USDC and gas (demo mode only)
    trader.deposit(Decimal(2000), "USDC")  # approve + deposit on the FundLock contract
    trader.sign_in(wait_s=120)  # works once the deposit is confirmed and credited
    print(trader.address, "has", trader.balance("USDC")["available"], "USDC available")
    return trader


buyer, seller = new_trader(), new_trader()
future = max(buyer.contracts(underlying="BTC/USDC", kind="future", state="listed"), key=lambda c: c["expiry_date"])
price = future["mark_price"] or (future["price_min"] + future["price_max"]) / 2  # no mark without a fresh index
price = (price / future["tick_size"]).to_integral_value() * future["tick_size"]
quantity = future["lot_size"]

buy = buyer.place_order(future["symbol"], "buy", price, quantity)
seller.place_order(future["symbol"], "sell", price, quantity)
while (order := buyer.order(buy["id"]))["state"] in ("received", "accepted"):
    time.sleep(1)  # auctions run every 10 s
print("order", order["id"], order["state"], "at", order["average_fill_price"])
for fill in buyer.fills(order=buy["id"]):
    print("fill:", fill["side"], fill["quantity"], fill["contract"], "@", fill["price"], "in", fill["venue_ref"])
print("positions:", buyer.positions())
