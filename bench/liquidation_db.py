"""The liquidation check through a real PostgreSQL: from a price tick to every liquidatable isolated position
identified, the way the service does it (the process's live index, ``ccp.perps.live``), next to the PostgreSQL
probe it used before and to plain walks over every position, measured in the same run.

    .venv/bin/python bench/liquidation_db.py [--sizes 10000 100000 1000000] [--cross-sizes 1000 10000]
                                             [--runs 3] [--changed 1000] [--seed 1]

One perpetual (BTC-USDC-PERP: tick 0.01, lot 0.1, one maintenance tier at 0.5% up to 100x, liquidation fee
0.05%, reference price 100) holding ``size`` open isolated positions, one client each: the generator of
``bench/liquidation_scan.py`` (half long, half short, entry 99..101, leverage 1..100, size 0.1..10; a
position already liquidatable at 99.99..100.01 is drawn again; the same draws for the same seed, checked
against that bench's own generator on the first size), each with its cost, margin, trigger prices and signed
keys (``liquidation_key``, ``call_key``: a short's negative) from ``ccp.perps.booking.position_triggers`` (call
ratio ``CCP_MARGIN_CALL_RATIO``). Clients, fund locks (the deposit is the margin; the trade's cash is in
``settle_value``) and positions go in with COPY (through the ``risk_position_written`` trigger), then ANALYZE;
that set-up is timed apart. A quiet tick moves the mark from 100 to 99.99 (0.01%), a crash tick to 98.00 (2%).

Per tick, wall ms (what a worker waits), medians of ``--runs``, this process's CPU ms beside:
- live (the service's identification): ``ccp.perps.live.isolated_crossed_synced`` with nothing written since the
  last check: the sync (one indexed query for the rows written since) and the crossed positions cut out of the
  index, counted; the index was built before (timed apart);
- take 100: ``ccp.perps.services.isolated_taken(limit=100)``, what one transaction of the tasks does
  (``CCP_LIQUIDATIONS_PER_CHECK``): the live identification, then the 100 worst read by id and checked exactly;
- list: every crossed position's id listed worst first (CPU ms: what taking all of them one by one costs on top);
- probe (the PostgreSQL path, before): ``ccp.perps.watch.isolated_reached`` (the positions whose liquidation key
  the mark reached, through ``position_liquidation_key``) then ``ccp.perps.margin.liquidatable`` on each;
- walk (baseline): every open isolated position of the contract read and checked with ``liquidatable``;
- loop (baseline, in memory): the plain loop of ``bench/liquidation_scan.py`` over every position's stored
  liquidation price, loaded into this process's memory first (CPU ms);
- sweep: ``ccp.perps.watch.isolated_called`` at the tick's mark (the minute sweep of margin calls,
  ``perpetuals_margin_call``, through the call key; no position has been called yet), a figure of its own.
The live index, the probe and the walk must find the same liquidatable set, the in-memory loop the same
positions, the 100 taken must be the first 100 the index lists, and the sweep the positions the walk finds past
their call key but not their liquidation key, or the bench stops. The peer's figures (``bench/liquidation_scan.py``'s
PEER: an in-memory loop, CPU time) and the targets are printed beside. Per size, also: the cold build of the live
index (what a fresh process does on its first check), and the sync after ``--changed`` positions were written by
others (their liquidation keys moved one tick by one UPDATE, committed, not timed) with the crash tick's
identification; the index must then count what the probe reaches. For each size and tick the probe's SQL is shown
with ``EXPLAIN (ANALYZE, BUFFERS)``, with whether it went through ``position_liquidation_key``; the sweep's with
``position_call_key``.

Cross margin: ``ccp.perps.cross.cross_accounts_below`` reads every cross account holding the perpetual at
each mark (by design: a cross trigger moves with the account's other positions). It is timed for
``--cross-sizes`` accounts with one leg each (drawn by the same generator; the deposit is the margin, so an
account is liquidatable exactly when the isolated position it mirrors would be), on a perpetual of their own
(ETH-USDC-PERP, "alone") and on BTC-USDC-PERP beside the last size's isolated positions ("beside"); its
answer must be the exact set.

PostgreSQL and Redis are the repository's own (``bin/stack.py``, fsync off as for tests), started fresh here
and stopped at the end; Django runs in a child process. About 15 minutes with the default sizes on 2 cores.
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
from bench.liquidation_scan import FEE, PEER, RATE, TICK, plain_scan  # noqa: E402
from bench.liquidation_scan import positions as scan_positions  # noqa: E402
from ccp.perps.margin import LONG, SHORT, initial_margin, liquidation_price  # noqa: E402

RESULT_MARK = "BENCH-LIQUIDATION-DB-JSON "
REFERENCE = Decimal(100)
TICKS = (("quiet", Decimal("99.99")), ("crash", Decimal("98.00")))
TARGET_MS = {"quiet": 5, "crash": 50}  # issue 13, at 1,000,000 positions


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
    from ccp.perps.live import isolated_crossed_synced, live_indexes_drop
    from ccp.perps.margin import Tier, liquidatable, tier_of
    from ccp.perps.models import Perpetual
    from ccp.perps.services import isolated_taken, perpetual_list
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

    contract = btc.contract

    def live(mark: Decimal):
        """The service's identification: the sync, then the crossed positions cut out and counted."""
        crossing, synced = isolated_crossed_synced(contract=contract, perpetual=btc, mark=mark)
        return crossing, synced.rows, len(crossing)

    def take(mark: Decimal) -> list[int]:
        return [c.position_id for c in isolated_taken(contract=contract, perpetual=btc, mark=mark, exclude=(),
                                                      limit=100)[0]]

    def built() -> int:
        live_indexes_drop()
        return live(TICKS[1][1])[1]

    def explain(queryset) -> dict:
        return {"sql": str(queryset.query), "plan": queryset.explain(analyze=True, buffers=True).splitlines()}

    results, explains = {}, {}
    rng = random.Random(args.seed)
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
        ids, took = store(rows, btc, ISOLATED)
        position_ids = dict(Position.objects.filter(contract_id=contract_id).values_list("client_id", "id"))
        in_memory = [(position_ids[c], LONG if q > 0 else SHORT, t) for c, (q, _, _, t) in zip(ids, rows, strict=True)]
        ids, rows, position_ids = list(position_ids.values()), None, None
        log(f"{size:,} positions: drawn in {made_s:.1f} s, priced {took['rows_s']:.1f} s, COPY {took['copy_s']:.1f} s,"
            f" ANALYZE {took['analyze_s']:.1f} s")
        build_ms, build_cpu, read = timed(built, args.runs)
        keyed = sum(1 for *_, ticks in in_memory if ticks >= 0)  # a long at low leverage has no liquidation price
        if read != keyed:
            raise SystemExit(f"the live index was built from {read} rows, not {keyed}")
        results[size] = {"setup": {"drawn_s": made_s, **took}, "ticks": {},
                         "build": {"ms": build_ms, "cpu_ms": build_cpu}}
        for name, mark in TICKS:
            live_ms, live_cpu, (crossing, synced, count) = timed(lambda mark=mark: live(mark), args.runs)
            take_ms, take_cpu, taken = timed(lambda mark=mark: take(mark), args.runs)
            _, list_cpu, worst = timed(lambda crossing=crossing: list(crossing), args.runs)
            index_ms, index_cpu, (reached, hit, called) = timed(lambda mark=mark: indexed(mark), args.runs)
            walk_ms, walk_cpu, (read, walked, past_call) = timed(lambda mark=mark: walk(mark), args.runs)
            ticks = int(mark / TICK)
            _, loop_cpu, looped = timed(lambda ticks=ticks, rows=in_memory: plain_scan(rows, ticks), args.runs)
            sweep_ms, sweep_cpu, swept = timed(lambda mark=mark: sweep(mark), args.runs)
            if hit != walked:
                raise SystemExit(f"probe and walk disagree at {size} positions, {name} tick: "
                                 f"{len(hit)} vs {len(walked)} liquidatable")
            if sorted(worst) != hit or count != len(hit) or synced:
                raise SystemExit(f"the live index finds other positions at {size}, {name} tick ({count} vs "
                                 f"{len(hit)}, {synced} rows synced)")
            if taken != worst[:100] or sorted(looped) != hit:
                raise SystemExit(f"the 100 taken are not the index's worst, or the loop differs ({size}, {name})")
            if swept != past_call:
                raise SystemExit(f"isolated_called and walk disagree at {size} positions, {name} tick: "
                                 f"{len(swept)} vs {len(past_call)} margin-called")
            results[size]["ticks"][name] = {
                "reached": reached, "liquidatable": len(hit), "not": len(called), "live_ms": live_ms,
                "live_cpu_ms": live_cpu, "take_ms": take_ms, "take_cpu_ms": take_cpu, "list_cpu_ms": list_cpu,
                "index_ms": index_ms, "index_cpu_ms": index_cpu, "read": read, "walk_ms": walk_ms,
                "walk_cpu_ms": walk_cpu, "loop_cpu_ms": loop_cpu, "called": len(swept), "sweep_ms": sweep_ms,
                "sweep_cpu_ms": sweep_cpu}
            log(f"{size:,} {name}: {json.dumps(results[size]['ticks'][name])}")
            crossing = worst = None
        explains[size] = {name: {"probe": explain(probe_query(mark)), "sweep": explain(sweep_query(mark))}
                          for name, mark in reversed(TICKS)}
        changed_ms, changed_cpu, changed_rows = [], [], []
        for _ in range(args.runs):  # positions written by others since the last check: one tick further
            moved = rng.sample(ids, min(args.changed, size))
            with connection.cursor() as cursor:
                cursor.execute("UPDATE risk_position SET liquidation_key = liquidation_key + 0.01, liquidation_px = "
                               "liquidation_px + 0.01 * sign(quantity) WHERE id = ANY(%s)", [moved])
            wall, cpu, (_, synced, count) = timed(lambda: live(TICKS[1][1]), 1)
            changed_ms.append(wall)
            changed_cpu.append(cpu)
            changed_rows.append(synced)
            if count != len(isolated_reached(contract_id=contract_id, mark=TICKS[1][1])):
                raise SystemExit(f"after {args.changed} positions changed the live index differs from the probe")
        results[size]["changed"] = {"count": args.changed, "ms": statistics.median(changed_ms),
                                    "cpu_ms": statistics.median(changed_cpu), "rows": max(changed_rows)}
        log(f"{size:,} built {build_ms:.0f} ms, synced after {args.changed} changed: {results[size]['changed']}")
        in_memory = ids = None

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
    print(f"liquidation check: one perpetual, isolated positions, leverage 1..100, call ratio {out['call_ratio']}; "
          f"wall ms per tick, median of {runs} (this process's CPU ms in brackets)")
    print(f"{'positions':>10} {'tick':>6} {'liquid.':>8} {'live':>16} {'take 100':>16} {'list':>7} "
          f"{'probe (PG)':>18} {'walk (PG)':>20} {'loop':>7} {'peer':>6} {'target':>7} {'called':>7} "
          f"{'sweep':>16}")
    for size, entry in out["results"].items():
        for name, r in entry["ticks"].items():
            peer = PEER.get(int(size), (None, None))[0 if name == "quiet" else 1]
            target = TARGET_MS[name] if int(size) == 1_000_000 else None
            verdict = "-" if target is None else f"{target} {'met' if r['live_ms'] <= target else 'NOT'}"
            print(f"{int(size):>10,} {name:>6} {r['liquidatable']:>8,} {r['live_ms']:>7.2f} ({r['live_cpu_ms']:>6.2f}) "
                  f"{r['take_ms']:>7.1f} ({r['take_cpu_ms']:>6.1f}) {r['list_cpu_ms']:>7.1f} "
                  f"{r['index_ms']:>8.1f} ({r['index_cpu_ms']:>7.1f}) {r['walk_ms']:>9.1f} ({r['walk_cpu_ms']:>8.1f}) "
                  f"{r['loop_cpu_ms']:>7.1f} {peer or '-':>6} {verdict:>7} {r['called']:>7,} "
                  f"{r['sweep_ms']:>7.1f} ({r['sweep_cpu_ms']:>6.1f})")
        b, c, s = entry["build"], entry["changed"], entry["setup"]
        print(f"{'':>10} live index: cold build {b['ms']:,.0f} ms ({b['cpu_ms']:,.0f}); after {c['count']:,} positions "
              f"written, sync + crash tick {c['ms']:.1f} ms ({c['cpu_ms']:.1f}), {c['rows']:,} rows read")
        print(f"{'':>10} set-up: drawn {s['drawn_s']:.1f} s, priced and rows built {s['rows_s']:.1f} s, COPY "
              f"(clients, fund locks, positions) {s['copy_s']:.1f} s, ANALYZE {s['analyze_s']:.1f} s")
    print("liquid.: liquidatable (the same set on every path); live: the service's identification "
          "(ccp.perps.live: sync with nothing written since + the crossed positions cut out of the index); take 100: "
          "isolated_taken(limit=100), one transaction's worth identified, read and checked exactly; list: every "
          "crossed id listed worst first (CPU); probe: isolated_reached + liquidatable on each (the PostgreSQL path "
          "before); walk: every isolated position read and checked (baseline); loop: a plain loop over every "
          "position's stored price in memory (baseline, CPU); peer: in-memory loop, CPU ms (shared/bench/README.md); "
          "target: issue 13's, at 1,000,000 positions, against live; called, sweep: isolated_called (the minute "
          "sweep of margin calls, not on every tick)")
    for size, ticks in out["explains"].items():
        for name, queries in ticks.items():
            for query, function, index in (("probe", "isolated_reached", "position_liquidation_key"),
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
    parser.add_argument("--changed", type=int, default=1000, help="positions written before the sync timed after")
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
            "--cross-sizes", *map(str, args.cross_sizes), "--runs", str(args.runs), "--changed", str(args.changed),
            "--seed", str(args.seed)]
    if (done := child_run(args, argv, mark=RESULT_MARK, timeout=7200, stderr=False)) is None:
        return 1
    _, line = done
    loads.append(os.getloadavg())
    report(json.loads(line[len(RESULT_MARK):]), args.runs, tuple(loads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
