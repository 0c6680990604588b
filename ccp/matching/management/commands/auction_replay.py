"""Replay an auction from its input document and print the result as JSON.

    manage.py auction_replay input.json          # a file: stored by ccp, or written by hand
    manage.py auction_replay --auction 42        # a stored auction; exits 1 if the result differs
    manage.py auction_replay --auction 42 --input-only > input.json

The document format is described in ccp/matching/auction.py.
"""

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from ccp.matching.auction import document_hash, input_from_document, result_to_document
from ccp.matching.engine import AuctionInputError, clear
from ccp.matching.models import Auction


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
        if stored is not None and stored.result_document is not None and stored.result_document != result:
            before = stored.result_document
            keys = sorted(k for k in {*before, *result} if before.get(k) != result.get(k))
            self.stderr.write(f"the replay differs from the stored result of auction {auction} in: {', '.join(keys)} "
                              "(an auction solved before the engine changed replays with today's engine)")
            sys.exit(1)
