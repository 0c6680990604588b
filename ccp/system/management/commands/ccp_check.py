"""Check the clearing house's invariants, read-only, at any time (``ccp.system.invariants``):

    manage.py ccp_check            # with the chain checks when CCP_CHAIN_URL is set and FundLock deployed
    manage.py ccp_check --no-chain

Prints each violation on its own line and exits 1; exits 0 with a one-line summary when every
invariant holds; exits 2 when the checks could not run (the chain node does not answer).
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ccp.system.invariants import invariants_chain, invariants_check


class Command(BaseCommand):
    help = "Check the clearing house's invariants (money conserved, values consistent, chain agrees). Read-only."

    def add_arguments(self, parser):
        parser.add_argument("--no-chain", action="store_true", help="skip the checks against the chain")

    def handle(self, *args, no_chain: bool, **options):
        chain = None if no_chain else invariants_chain()
        try:
            report = invariants_check(chain=chain)
        except OSError as exc:  # requests' connection errors are OSErrors too
            raise CommandError(f"ccp_check could not read the chain at {settings.CCP_CHAIN_URL}: {exc}",
                               returncode=2) from exc
        for violation in report.violations:
            self.stdout.write(f"VIOLATION {violation}")
        if not report.ok:
            raise CommandError(report.summary(), returncode=1)
        self.stdout.write(report.summary() + ("" if chain is not None else "; chain not checked"))
