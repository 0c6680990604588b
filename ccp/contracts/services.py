from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

from ccp.clock import require_aware
from ccp.contracts.models import Contract, ContractState, Currency, Pair
from ccp.contracts.payoffs import ContractKind, Terms
from ccp.errors import ApplicationError, Conflict


@dataclass(frozen=True)
class SeriesSpec:
    """What an operator lists at once: one expiry of one pair, several kinds and strikes."""

    pair: Pair
    collateral: Currency
    expiry_date: date
    kinds: tuple[ContractKind, ...]
    strikes: tuple[Decimal, ...]  # for calls and puts; a future takes none
    floor_px: Decimal
    cap_px: Decimal
    tick_size: Decimal
    lot_size: Decimal


def _on_grid(value: Decimal, step: Decimal) -> bool:
    return value % step == 0


def _series_validate(spec: SeriesSpec, now: datetime) -> None:
    if spec.collateral != spec.pair.quote:
        # Payoffs are in quote units; another collateral would need an FX rate we do not have.
        raise ApplicationError(f"Collateral must be the pair's quote currency ({spec.pair.quote}).",
                               code="contract_collateral_not_quote")
    if spec.expiry_date <= require_aware(now).date():
        raise ApplicationError("The expiry date must be after today (UTC).", code="contract_expiry_in_past")
    if spec.tick_size <= 0 or spec.lot_size <= 0:
        raise ApplicationError("Tick and lot sizes must be positive.", code="contract_grid_invalid")
    options = [k for k in spec.kinds if k is not ContractKind.FUTURE]
    if not spec.kinds:
        raise ApplicationError("Choose at least one kind.", code="contract_kind_missing")
    if options and not spec.strikes:
        raise ApplicationError("Calls and puts need at least one strike.", code="contract_strike_missing")
    for strike in spec.strikes if options else ():
        try:
            Terms(kind=options[0], floor=spec.floor_px, cap=spec.cap_px, strike=strike)
        except (TypeError, ValueError) as exc:
            raise ApplicationError(str(exc), code="contract_terms_invalid", extra={"strike": str(strike)}) from exc
        if not _on_grid(strike, spec.tick_size):
            raise ApplicationError(f"Strike {strike} is not on the tick grid {spec.tick_size}.",
                                   code="contract_strike_off_tick", extra={"strike": str(strike)})
    if ContractKind.FUTURE in spec.kinds:
        try:
            Terms(kind=ContractKind.FUTURE, floor=spec.floor_px, cap=spec.cap_px)
        except (TypeError, ValueError) as exc:
            raise ApplicationError(str(exc), code="contract_terms_invalid") from exc


@transaction.atomic
def contract_series_create(*, spec: SeriesSpec, now: datetime) -> list[Contract]:
    """List every (kind, strike) of the series that does not exist yet; return the new contracts.

    Idempotent: contracts already listed with the same terms are skipped. All-or-nothing.
    """
    _series_validate(spec, now)
    wanted: list[tuple[ContractKind, Decimal | None]] = [
        (kind, strike) for kind in spec.kinds
        for strike in ((None,) if kind is ContractKind.FUTURE else sorted(set(spec.strikes)))
    ]
    created = []
    for kind, strike in wanted:
        exists = Contract.objects.filter(pair=spec.pair, expiry_date=spec.expiry_date, kind=kind.value,
                                         strike_px=strike).exists()
        if exists:
            continue
        contract = Contract(
            symbol=Contract.symbol_for(pair=spec.pair, expiry_date=spec.expiry_date, kind=kind.value, strike_px=strike),
            pair=spec.pair, collateral=spec.collateral, kind=kind.value, strike_px=strike,
            expiry_date=spec.expiry_date, floor_px=spec.floor_px, cap_px=spec.cap_px,
            tick_size=spec.tick_size, lot_size=spec.lot_size, state=ContractState.LISTED,
        )
        try:
            with transaction.atomic():
                contract.save()
        except IntegrityError as exc:
            # A concurrent listing of the same terms, or a symbol clash.
            raise Conflict(f"Contract {contract.symbol} could not be listed: {exc}", code="contract_conflict") from exc
        created.append(contract)
    return created

