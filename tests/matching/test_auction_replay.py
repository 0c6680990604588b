"""``manage.py auction_replay --auction N`` on a stored auction: a result written before the deterministic
engine (no ``reasons``, ``fallback_welfare``, ``terminations``, ...) is compared on the decision both
documents have (fills, prices, welfare) and the command says so; a real difference still exits 1, and a
result in today's format must be the replay's exactly."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from ccp.matching.auction import document_hash
from ccp.matching.models import Auction
from tests.conftest import NOW

pytestmark = pytest.mark.django_db

INPUT = {"format": "ccp-auction-input/1", "auction": "X/USDC replay", "contracts": [
    {"symbol": "C", "kind": "call", "strike": "100", "floor": "50", "cap": "150", "tick": "1", "lot": "0.1",
     "portfolio": "P"}], "clients": [{"id": "a", "budget": "1000"}, {"id": "b", "budget": "1000"}],
    "orders": [
        {"id": "1", "client": "a", "contract": "C", "side": "buy", "price": "12", "quantity": "0.3", "priority": 1},
        {"id": "2", "client": "b", "contract": "C", "side": "sell", "price": "10", "quantity": "0.2", "priority": 2}]}

# What the engine before issue 14 stored for INPUT: its keys only, another method and bound, its numbers
# with trailing zeros and its fills in another order. The decision is today's: 0.2 lots at 12.
BEFORE = {"format": "ccp-auction-result/1", "status": "optimal", "method": "lp-prices+mip", "solver": "HiGHS 1.11.0",
          "welfare": "0.40", "upper_bound": "0.45", "gap": "0.111111111", "prices": {"C": "12.0"},
          "fills": [{"order": "2", "quantity": "0.20", "price": "12"},
                    {"order": "1", "quantity": "0.2", "price": "12"}], "binding_clients": []}
NEW_KEYS = "candidates, fallback_welfare, reasons, terminations, time_guard"


def stored(result: dict) -> Auction:
    return Auction.objects.create(group="X/USDC", slot=NOW, state="solved", input_document=INPUT,
                                  input_hash=document_hash(INPUT), result_document=result, opened_at=NOW)


def replay(auction: Auction) -> tuple[int, dict, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("auction_replay", auction=auction.pk, stdout=out, stderr=err)
        code = 0
    except SystemExit as exited:
        code = exited.code
    return code, json.loads(out.getvalue()), err.getvalue()


def today() -> dict:
    _, result, _ = replay(stored(BEFORE))
    Auction.objects.all().delete()
    result.pop("input_hash")
    return result


def test_a_result_stored_before_the_engine_change_replays_as_the_same_decision_and_says_so():
    auction = stored(BEFORE)
    code, result, said = replay(auction)
    assert code == 0
    assert (result["prices"], result["welfare"], result["method"]) == ({"C": "12"}, "0.4", "uncross")  # today's
    assert said.strip() == (f"the stored result of auction {auction.pk} predates today's engine (it has no "
                            f"{NEW_KEYS}): compared the decision both have (fills, prices, welfare): the same")


@pytest.mark.parametrize(("change", "key"), [
    ({"fills": [{"order": "1", "quantity": "0.1", "price": "12"}, {"order": "2", "quantity": "0.1", "price": "12"}]},
     "fills"),
    ({"fills": [{"order": "1", "quantity": "0.2", "price": "12"}]}, "fills"),
    ({"fills": [{"order": "1", "quantity": "0.2"}, {"order": "2", "quantity": "0.2"}]}, "fills"),  # unreadable
    ({"prices": {"C": "11"}}, "prices"),
    ({"welfare": "0.39"}, "welfare"),
])
def test_an_older_result_with_another_decision_still_differs(change, key):
    auction = stored({**BEFORE, **change})
    code, _, said = replay(auction)
    assert code == 1
    assert said.strip() == (f"the replay differs from the stored result of auction {auction.pk} in: {key}; the "
                            f"stored result of auction {auction.pk} predates today's engine (it has no {NEW_KEYS}): "
                            "compared the decision both have (fills, prices, welfare)")


def test_an_older_result_without_a_decision_differs():
    auction = stored({"format": "ccp-auction-result/1", "status": "optimal"})
    code, _, said = replay(auction)
    assert code == 1 and "in: fills, prices, welfare;" in said and "compared the decision both have (none)" in said


def test_a_result_in_todays_format_must_be_the_replays_exactly():
    current = today()
    assert replay(stored(current))[::2] == (0, "")
    Auction.objects.all().delete()
    # the same decision, but another method (or a number written otherwise): a real difference today
    for change, key in (({"method": "greedy (no MIP answer)"}, "method"), ({"welfare": "0.40"}, "welfare")):
        auction = stored({**current, **change})
        code, _, said = replay(auction)
        assert code == 1 and f"auction {auction.pk} in: {key} (" in said and "predates" not in said
        Auction.objects.all().delete()
