"""Replay an auction from its input document and print the result as JSON.

    manage.py auction_replay input.json          # a file: stored by ccp, or written by hand
    manage.py auction_replay --auction 42        # a stored auction; exits 1 if the result differs
    manage.py auction_replay --auction 42 --input-only > input.json

The document format is described in ccp/matching/auction.py. A stored result written before the engine
wrote all of today's keys (no ``reasons``, ``fallback_welfare``, ... : solved before the deterministic
engine) is compared on what both documents have of the decision, ``DECISION`` (fills, prices, welfare),
and the command says so; any other stored result must equal the replay's exactly.
"""

import json
import sys
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from ccp.matching.auction import document_hash, input_from_document, result_to_document
from ccp.matching.engine import AuctionInputError, clear
from ccp.matching.models import Auction

DECISION = ("fills", "prices", "welfare")  # what an auction decided, in every result document's format


def _same_decision(key: str, stored, replayed) -> bool:
    """Whether a decision key says the same in both documents, numbers compared as Decimals and fills by
    order: the same decision written by another engine (other trailing zeros, another fill order) is the
    same. A stored value that does not read as a decision is not."""
    def decided(value):
        if key == "fills":
            return sorted((f["order"], Decimal(f["quantity"]), Decimal(f["price"])) for f in value)
        if key == "prices":
            return {symbol: Decimal(price) for symbol, price in value.items()}
        return Decimal(value)

    try:
        return decided(stored) == decided(replayed)
    except (ArithmeticError, AttributeError, KeyError, TypeError, ValueError):
        return False


def result_differences(stored: dict, replayed: dict) -> tuple[list[str], list[str]]:
    """The keys in which a replay differs from a stored result, and the keys of today's result the stored
    one lacks: when it lacks some (an older engine wrote it) only the decision keys it has are compared
    (it has none: it differs in them all)."""
    missing = sorted(replayed.keys() - stored.keys())
    if not missing:
        return sorted(k for k in {*stored, *replayed} if stored.get(k) != replayed.get(k)), []
    compared = [k for k in DECISION if k in stored]
    if not compared:
        return list(DECISION), missing
    return [k for k in compared if not _same_decision(k, stored[k], replayed[k])], missing


class Command(BaseCommand):
    help = "Clear an auction from its input document (a file or a stored auction) and print the result."

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", help="input document (JSON); '-' reads standard input")
        parser.add_argument("--auction", type=int, help="replay a stored auction and compare with its result")
        parser.add_argument("--input-only", action="store_true", help="print the stored input document and stop")

    def handle(self, *args, path=None, auction=None, input_only=False, **options):
        stored = None
        if auction is not None:
            stored = Auction.objects.filter(pk=auction).first()
            if stored is None or stored.input_document is None:
                raise CommandError(f"auction {auction} has no input document")
            document = stored.input_document
        elif path:
            try:
                document = json.load(sys.stdin if path == "-" else open(path))  # noqa: SIM115
            except (OSError, json.JSONDecodeError) as exc:
                raise CommandError(f"cannot read {path}: {exc}") from exc
        else:
            raise CommandError("give an input file or --auction ID")
        if input_only:
            self.stdout.write(json.dumps(document, indent=2, sort_keys=True))
            return
        try:
            result = result_to_document(clear(input_from_document(document)))
        except (KeyError, TypeError, ValueError, AuctionInputError) as exc:
            raise CommandError(f"invalid input document: {exc}") from exc
        self.stdout.write(json.dumps({"input_hash": document_hash(document), **result}, indent=2))
        if stored is None or stored.result_document is None:
            return
        differs, missing = result_differences(stored.result_document, result)
        if missing:  # an older engine's result: its decision only
            compared = ", ".join(k for k in DECISION if k in stored.result_document) or "none"
            older = (f"the stored result of auction {auction} predates today's engine (it has no "
                     f"{', '.join(missing)}): compared the decision both have ({compared})")
            if not differs:
                self.stderr.write(f"{older}: the same")
                return
            self.stderr.write(f"the replay differs from the stored result of auction {auction} in: "
                              f"{', '.join(differs)}; {older}")
            sys.exit(1)
        if differs:
            self.stderr.write(f"the replay differs from the stored result of auction {auction} in: "
                              f"{', '.join(differs)} (an auction solved before the engine changed replays with "
                              "today's engine)")
            sys.exit(1)
