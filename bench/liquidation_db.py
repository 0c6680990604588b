"""The liquidation check through a real PostgreSQL: from a price tick to every liquidatable isolated position
identified, the way the service does it, next to the plain walk it did before, measured in the same run.

    .venv/bin/python bench/liquidation_db.py [--sizes 10000 100000 1000000] [--cross-sizes 1000 10000]
                                             [--runs 3] [--seed 1]

One perpetual (BTC-USDC-PERP: tick 0.01, lot 0.1, one maintenance tier at 0.5% up to 100x, liquidation fee
0.05%, reference price 100) holding ``size`` open isolated positions, one client each: the generator of
``bench/liquidation_scan.py`` (half long, half short, entry 99..101, leverage 1..100, size 0.1..10; a
position already liquidatable at 99.99..100.01 is drawn again; the same draws for the same seed, checked
against that bench's own generator on the first size), each with its cost, margin, trigger prices and signed
keys (``liquidation_key``, ``call_key``: a short's negative) from ``ccp.perps.booking.position_triggers`` (call
ratio ``CCP_MARGIN_CALL_RATIO``). Clients, fund locks (the deposit is the margin; the trade's cash is in
``settle_value``) and positions go in with COPY, then ANALYZE; that set-up is timed apart. A quiet tick moves
the mark from 100 to 99.99 (0.01%), a crash tick to 98.00 (2%).

Per tick, wall ms (what a worker waits: the query, building the rows, Python's check), medians of ``--runs``:
- indexed: ``ccp.perps.watch.isolated_reached(contract_id=..., mark=...)`` (the positions whose liquidation key
  the mark reached: a long's key at or above it, a short's in [-mark, 0); ``Reached`` tuples, no model
  objects) then ``ccp.perps.margin.liquidatable`` on each, as ``ccp.perps.services.isolated_candidates`` does;
- walk (baseline): every open isolated position of the contract read (the query of
  ``perpetual_liquidations_enter`` before the indexes, without its ``select_related("client")``) and each one
  checked with ``liquidatable``;
- no ORDER: the probe's queryset with ``.order_by()`` (``Position.Meta.ordering`` puts ``ORDER BY client_id,
  contract_id`` on ``isolated_reached``'s query, so the planner may walk the client index instead of the key's),
  its rows sorted in Python and checked the same way: the proposed fix, timed beside; it must find the same set;
- sweep: ``ccp.perps.watch.isolated_called`` at the tick's mark (the minute sweep of margin calls,
  ``perpetuals_margin_call``, through the call key; no position has been called yet, so every position past its
  call price but not its liquidation price comes back), a figure of its own: it no longer runs on every tick.
The three paths must find the same liquidatable set, and the sweep the positions the walk finds past their call key
but not their liquidation key, or the bench stops. The CPU ms of this process (the Python side; PostgreSQL's
own work is in the wall time) and the peer's figures (``bench/liquidation_scan.py``'s PEER: an in-memory loop,
CPU time) are printed beside. For each size and tick the probe's SQL (the queryset of ``isolated_reached``,
built here with ``_key_reached``, the model's default ordering included) is shown with ``EXPLAIN (ANALYZE,
BUFFERS)``, with whether it went through ``position_liquidation_key``; the same without ORDER BY, and the
sweep's with ``position_call_key``.

Cross margin: ``ccp.perps.cross.cross_accounts_below`` reads every cross account holding the perpetual at
each mark (by design: a cross trigger moves with the account's other positions). It is timed for
``--cross-sizes`` accounts with one leg each (drawn by the same generator; the deposit is the margin, so an
account is liquidatable exactly when the isolated position it mirrors would be), on a perpetual of their own
(ETH-USDC-PERP, "alone") and on BTC-USDC-PERP beside the last size's isolated positions ("beside"); its
answer must be the exact set.

PostgreSQL and Redis are the repository's own (``bin/stack.py``, fsync off as for tests), started fresh here
and stopped at the end; Django runs in a child process. About 10 minutes with the default sizes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.book_batch import child_run, log  # noqa: E402
from bench.liquidation_scan import FEE, PEER, RATE, TICK  # noqa: E402
from bench.liquidation_scan import positions as scan_positions  # noqa: E402
from ccp.perps.margin import LONG, SHORT, initial_margin, liquidation_price  # noqa: E402

RESULT_MARK = "BENCH-LIQUIDATION-DB-JSON "
REFERENCE = Decimal(100)
TICKS = (("quiet", Decimal("99.99")), ("crash", Decimal("98.00")))


def drawn(count: int, seed: int) -> list[tuple[Decimal, Decimal, Decimal, int]]:
    """(signed quantity, entry, margin, liquidation price in ticks or -1) of ``count`` positions: the draws of
    ``bench.liquidation_scan.positions`` for the same seed, with what it drops (quantity, entry, margin)."""
    rng = random.Random(seed)
    made = []
    while len(made) < count:
        side = LONG if len(made) % 2 else SHORT
        entry = Decimal(rng.randint(9900, 10100)) * TICK
        quantity = Decimal(rng.randint(1, 100)) / 10 * (1 if side == LONG else -1)
        margin = initial_margin(quantity=quantity, price=entry, leverage=Decimal(rng.randint(1, 100)))
        price = liquidation_price(quantity=quantity, entry_px=entry, margin=margin, rate=RATE, fee_rate=FEE, tick=TICK)
        ticks = -1 if price is None else int(price / TICK)
        if ticks < 0 or (ticks < 9999 if side == LONG else ticks > 10001):
            made.append((quantity, entry, margin, ticks))
    return made


def timed(call, runs: int) -> tuple[float, float, object]:
    """Median wall ms, median CPU ms of this process, and the last result of ``runs`` calls."""
    walls, cpus, result = [], [], None
    for _ in range(runs):
        result = None  # the previous run's rows are freed before the next one starts
        w0, c0 = time.perf_counter(), time.process_time()
        result = call()
        walls.append((time.perf_counter() - w0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
    return statistics.median(walls), statistics.median(cpus), result


def child(args) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp.settings")
    import django

    django.setup()
    from datetime import timedelta

    from django.conf import settings
    from django.db import connection, transaction

    from ccp.accounts.models import Client, FundLock
    from ccp.clock import utcnow
    from ccp.contracts.models import Currency, Pair
    from ccp.db import bulk_insert_rows, ids_reserve
    from ccp.perps.accounting import CROSS, ISOLATED, PerpPosition
    from ccp.perps.booking import position_triggers
    from ccp.perps.cross import cross_accounts_below
    from ccp.perps.margin import Tier, liquidatable, tier_of
    from ccp.perps.models import Perpetual
    from ccp.perps.services import perpetual_list
    from ccp.perps.watch import _key_reached, isolated_called, isolated_reached
    from ccp.risk.models import Position

    now = utcnow()
    usdc = Currency.objects.create(symbol="USDC", name="USD Coin", decimals=6)
    tiers = [Tier(None, RATE, Decimal(100))]
    ratio = settings.CCP_MARGIN_CALL_RATIO

    def listed(symbol: str) -> Perpetual:
        base = Currency.objects.create(symbol=symbol, name=symbol, decimals=8)
        contract = perpetual_list(pair=Pair.objects.create(base=base, quote=usdc), collateral=usdc, tick_size=TICK,
                                  lot_size=Decimal("0.1"), floor_px=Decimal(1), cap_px=Decimal(1000), tiers=tiers,
                                  liquidation_fee_rate=FEE, funding_cap=Decimal("0.0075"), now=now)
        Perpetual.objects.filter(pk=contract.pk).update(settle_px=REFERENCE, mark_px=REFERENCE, marked_at=now)
        return Perpetual.objects.get(pk=contract.pk)

    btc = listed("BTC")
    contract_id = btc.pk
    position_defaults, lock_defaults = ({f.attname: f.get_default() for f in model._meta.concrete_fields
                                         if not f.primary_key} for model in (Position, FundLock))

    def store(rows: list[tuple], perpetual: Perpetual, mode: str) -> tuple[list[int], dict]:
        """One client, fund lock and position of ``mode`` per drawn row (COPY), then ANALYZE; the clients' ids
        and the seconds each step took."""
        took = {}
        t0 = time.perf_counter()
        ids = ids_reserve(Client, len(rows))
        clients, locks, positions = [], [], []
        for client_id, (quantity, entry, margin, _) in zip(ids, rows, strict=True):
            cost = quantity * entry
            triggers = position_triggers(PerpPosition(quantity=quantity, cost=cost, margin=margin, mode=mode),
                                         perpetual, perpetual.contract)
            clients.append({"id": client_id, "address": f"0x{client_id:040x}", "registered_at": now,
                            "stream_sequence": 0})
            # The deposit is the margin; the opening trade paid q * (entry - R) in cash (settle_value), and the
            # position holds its margin less that (ccp.perps.accounting): available is then zero.
            paid = cost - quantity * REFERENCE
            locks.append({**lock_defaults, "client_id": client_id, "currency_id": usdc.pk, "fundlock": margin,
                          "order_value": 0, "settle_value": -paid, "lockup_value": 0, "margin_value": margin - paid,
                          "updated_at": now})
            positions.append({**position_defaults, "client_id": client_id, "contract_id": perpetual.pk,
                              "quantity": quantity, "cost": cost, "entry_price": entry, "margin_mode": mode,
                              "margin": margin, **triggers, "updated_at": now})
        took["rows_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with transaction.atomic():
            bulk_insert_rows(Client, clients, with_pk=True)
            bulk_insert_rows(FundLock, locks)
            bulk_insert_rows(Position, positions)
        took["copy_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE accounts_client, accounts_fundlock, risk_position")
        took["analyze_s"] = time.perf_counter() - t0
        return ids, took

    def check(rows, mark: Decimal) -> tuple[list[int], list[int]]:
        """The exact check on each (id, quantity, cost, margin): (liquidatable ids, the others')."""
        hit, missed = [], []
        for pk, q, cost, margin in rows:
            (hit if liquidatable(quantity=q, entry_px=cost / q, margin=margin, mark=mark,
                                 rate=tier_of(tiers, q).rate, fee_rate=FEE) else missed).append(pk)
        return hit, missed

    def indexed(mark: Decimal) -> tuple[int, list[int], list[int]]:
        reached = isolated_reached(contract_id=contract_id, mark=mark)
        return len(reached), *check(((r.position_id, r.quantity, r.cost, r.margin) for r in reached), mark)

    def past(key: Decimal | None, mark: Decimal) -> bool:
        return key is not None and (key >= mark or -mark <= key < 0)

    def walk(mark: Decimal) -> tuple[int, list[int], list[int]]:
        """(positions read, liquidatable ids, ids past their call key but not their liquidation key)."""
        every = list(Position.objects.filter(contract_id=contract_id, margin_mode=ISOLATED).exclude(quantity=0)
                     .order_by("id"))
        hit, _ = check(((p.pk, p.quantity, p.cost, p.margin) for p in every), mark)
        return len(every), hit, [p.pk for p in every if past(p.call_key, mark) and not past(p.liquidation_key, mark)]

    def sweep(mark: Decimal) -> list[int]:
        return [p.pk for p in isolated_called(contract_id=contract_id, mark=mark, now=utcnow())]

    def probe_query(mark: Decimal):
        """The queryset ``isolated_reached`` runs (ccp.perps.watch), as it is built there."""
        return Position.objects.filter(_key_reached("liquidation_key", mark), contract_id=contract_id).values_list(
            "id", "client_id", "quantity", "cost", "margin").order_by()

    def sweep_query(mark: Decimal):
        """The queryset ``isolated_called`` runs, as it is built there (no position called yet)."""
        return Position.objects.filter(_key_reached("call_key", mark), contract_id=contract_id).exclude(
            _key_reached("liquidation_key", mark)).filter(margin_called_at__isnull=True).order_by("id")

    def unordered(mark: Decimal) -> tuple[int, list[int], list[int]]:
        """The probe without the model's default ordering (``Meta.ordering`` puts ORDER BY client_id, contract_id
        on ``isolated_reached``'s query), sorted in Python as the service sorts: the proposed fix."""
        rows = sorted(probe_query(mark).order_by())
        return len(rows), *check(((pk, q, cost, margin) for pk, _, q, cost, margin in rows), mark)

    def explain(queryset) -> dict:
        return {"sql": str(queryset.query), "plan": queryset.explain(analyze=True, buffers=True).splitlines()}

    results, explains = {}, {}
    for number, size in enumerate(args.sizes):
        if number:
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE risk_position, accounts_fundlock, accounts_client CASCADE")
        t0 = time.perf_counter()
        rows = drawn(size, args.seed)
        made_s = time.perf_counter() - t0
        if not number and [(k, LONG if q > 0 else SHORT, t) for k, (q, _, _, t) in enumerate(rows)] != \
                scan_positions(size, args.seed):
            raise SystemExit("the positions differ from bench/liquidation_scan.py's for the same seed")
        _, took = store(rows, btc, ISOLATED)
        rows = None
        log(f"{size:,} positions: drawn in {made_s:.1f} s, priced {took['rows_s']:.1f} s, COPY {took['copy_s']:.1f} s,"
            f" ANALYZE {took['analyze_s']:.1f} s")
        results[size] = {"setup": {"drawn_s": made_s, **took}, "ticks": {}}
        for name, mark in TICKS:
            index_ms, index_cpu, (reached, hit, called) = timed(lambda mark=mark: indexed(mark), args.runs)
            walk_ms, walk_cpu, (read, walked, past_call) = timed(lambda mark=mark: walk(mark), args.runs)
            sweep_ms, sweep_cpu, swept = timed(lambda mark=mark: sweep(mark), args.runs)
            bare_ms, bare_cpu, (_, bare, _) = timed(lambda mark=mark: unordered(mark), args.runs)
            if hit != walked:
                raise SystemExit(f"indexed and walk disagree at {size} positions, {name} tick: "
                                 f"{len(hit)} vs {len(walked)} liquidatable")
            if bare != hit:
                raise SystemExit(f"the probe without ORDER BY finds other positions at {size}, {name} tick")
            if swept != past_call:
                raise SystemExit(f"isolated_called and walk disagree at {size} positions, {name} tick: "
                                 f"{len(swept)} vs {len(past_call)} margin-called")
            results[size]["ticks"][name] = {
                "reached": reached, "liquidatable": len(hit), "not": len(called), "index_ms": index_ms,
                "index_cpu_ms": index_cpu, "read": read, "walk_ms": walk_ms, "walk_cpu_ms": walk_cpu,
                "called": len(swept), "sweep_ms": sweep_ms, "sweep_cpu_ms": sweep_cpu, "bare_ms": bare_ms,
                "bare_cpu_ms": bare_cpu}
            log(f"{size:,} {name}: {json.dumps(results[size]['ticks'][name])}")
        explains[size] = {name: {"probe": explain(probe_query(mark)), "sweep": explain(sweep_query(mark)),
                                 "bare": explain(probe_query(mark).order_by())} for name, mark in reversed(TICKS)}

    # Cross accounts, cumulative: the first size's accounts stay when the next size adds the rest.
    cross = {}
    if args.cross_sizes:
        eth = listed("ETH")
        fresh_since = now - timedelta(hours=1)
        places = {"alone": (eth, []), "beside": (btc, [])}  # perpetual, the rows stored on it so far
        for count in args.cross_sizes:
            for place, (perpetual, stored) in places.items():
                more = drawn(count, args.seed + 1)[len(stored):]
                stored_ids, took = store(more, perpetual, CROSS)
                stored.extend(zip(stored_ids, more, strict=True))
                for name, mark in TICKS:
                    Perpetual.objects.filter(pk=perpetual.pk).update(mark_px=mark, marked_at=utcnow())
                    expected = sorted(client_id for client_id, (q, entry, margin, _) in stored if liquidatable(
                        quantity=q, entry_px=entry, margin=margin, mark=mark, rate=RATE, fee_rate=FEE))
                    wall, cpu, found = timed(lambda perpetual=perpetual: cross_accounts_below(
                        contract_id=perpetual.pk, currency_id=usdc.pk, fresh_since=fresh_since), args.runs)
                    if sorted(f.client_id for f in found) != expected:
                        raise SystemExit(f"cross_accounts_below missed or added accounts ({place}, {count}, {name})")
                    cross.setdefault(count, {}).setdefault(place, {})[name] = {
                        "found": len(found), "ms": wall, "cpu_ms": cpu}
                Perpetual.objects.filter(pk=perpetual.pk).update(mark_px=REFERENCE, marked_at=utcnow())
                log(f"{count:,} cross accounts {place}: {json.dumps(cross[count][place])}")
    beside = Position.objects.filter(contract_id=contract_id, margin_mode=ISOLATED).count()
    print(RESULT_MARK + json.dumps({"results": results, "explains": explains, "cross": cross,
                                    "beside": beside, "call_ratio": str(ratio)}), flush=True)


def through(plan: list[str], index: str) -> str:
    """Whether the plan reads the index (an Index Scan using it or a Bitmap Index Scan on it)."""
    text = "\n".join(plan)
    if index in text:
        return f"through {index}"
    return f"NOT through {index}" + (" (Seq Scan of risk_position)" if "Seq Scan on risk_position" in text else "")


def report(out: dict, runs: int, loads: tuple) -> None:
    print(f"liquidation check through PostgreSQL: one perpetual, isolated positions, leverage 1..100, call ratio "
          f"{out['call_ratio']}; wall ms per tick, median of {runs}")
    print(f"{'positions':>10} {'tick':>6} {'reached':>8} {'liquid.':>8} {'indexed':>9} {'(cpu)':>8} "
          f"{'walk ms':>9} {'(cpu)':>8} {'ratio':>7} {'peer ms':>8} {'no ORDER':>9} {'(cpu)':>8} {'called':>7} "
          f"{'sweep ms':>9} {'(cpu)':>8}")
    for size, entry in out["results"].items():
        for name, r in entry["ticks"].items():
            peer = PEER.get(int(size), (None, None))[0 if name == "quiet" else 1]
            print(f"{int(size):>10,} {name:>6} {r['reached']:>8,} {r['liquidatable']:>8,} "
                  f"{r['index_ms']:>9.1f} {r['index_cpu_ms']:>8.1f} {r['walk_ms']:>9.1f} {r['walk_cpu_ms']:>8.1f} "
                  f"{r['walk_ms'] / r['index_ms']:>6.1f}x {peer or '-':>8} {r['bare_ms']:>9.1f} "
                  f"{r['bare_cpu_ms']:>8.1f} {r['called']:>7,} {r['sweep_ms']:>9.1f} {r['sweep_cpu_ms']:>8.1f}")
        s = entry["setup"]
        print(f"{'':>10} set-up: drawn {s['drawn_s']:.1f} s, priced and rows built {s['rows_s']:.1f} s, COPY "
              f"(clients, fund locks, positions) {s['copy_s']:.1f} s, ANALYZE {s['analyze_s']:.1f} s")
    print("reached: rows isolated_reached returned (liquidation key reached); liquid.: liquidatable (the same set "
          "on both paths); indexed: isolated_reached + liquidatable on each; walk: every isolated position read and "
          "checked (baseline); ratio = walk / indexed; peer: in-memory loop, CPU ms (shared/bench/README.md); no "
          "ORDER: the probe's query without the model's default ordering, sorted in Python (the proposed fix); "
          "called, sweep: isolated_called (the minute sweep of margin calls, not on every tick); (cpu): this "
          "process's CPU ms (PostgreSQL's work is in wall only)")
    for size, ticks in out["explains"].items():
        for name, queries in ticks.items():
            for query, function, index in (("probe", "isolated_reached", "position_liquidation_key"),
                                           ("bare", "isolated_reached's query with .order_by(), the proposed fix",
                                            "position_liquidation_key"),
                                           ("sweep", "isolated_called", "position_call_key")):
                e = queries[query]
                print(f"\nEXPLAIN (ANALYZE, BUFFERS) of {function} at the {name} tick, "
                      f"{int(size):,} positions: {through(e['plan'], index)}")
                print(f"  {e['sql']}")
                print("\n".join(f"  {line}" for line in e["plan"]))
    if out["cross"]:
        print(f"\ncross_accounts_below: one leg per account, wall ms per mark, median of {runs} "
              f"(beside: on BTC-USDC-PERP with its {out['beside']:,} isolated positions)")
        print(f"{'accounts':>9} {'place':>7} {'tick':>6} {'found':>7} {'wall ms':>8} {'cpu ms':>7}")
        for count, places in out["cross"].items():
            for place, ticks in places.items():
                for name, r in ticks.items():
                    print(f"{int(count):>9,} {place:>7} {name:>6} {r['found']:>7,} {r['ms']:>8.1f} {r['cpu_ms']:>7.1f}")
    print("\nload average before / after: " + " / ".join(", ".join(f"{x:.2f}" for x in load) for load in loads))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--cross-sizes", type=int, nargs="*", default=[1_000, 10_000],
                        help="cross accounts, cumulative (none: skip)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pg-port", type=int, default=25611)
    parser.add_argument("--redis-port", type=int, default=26611)
    parser.add_argument("--state-dir", default="/var/tmp/ccp-bench-liquidation-db",
                        help="PostgreSQL data and logs (wiped at each start)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    loads = [os.getloadavg()]
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--sizes", *map(str, args.sizes),
            "--cross-sizes", *map(str, args.cross_sizes), "--runs", str(args.runs), "--seed", str(args.seed)]
    if (done := child_run(args, argv, mark=RESULT_MARK, timeout=7200, stderr=False)) is None:
        return 1
    _, line = done
    loads.append(os.getloadavg())
    report(json.loads(line[len(RESULT_MARK):]), args.runs, tuple(loads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
