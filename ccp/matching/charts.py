"""Supply and demand of one contract in an auction, drawn as a small SVG. Pure."""

from __future__ import annotations

from decimal import Decimal
from html import escape

WIDTH, HEIGHT, PAD = 360, 220, 36


def _steps(levels: list[tuple[Decimal, Decimal]]) -> list[tuple[Decimal, Decimal]]:
    """Cumulative (quantity, price) points of a step curve through price levels in book order."""
    points, total = [], Decimal(0)
    for price, quantity in levels:
        points.append((total, price))
        total += quantity
        points.append((total, price))
    return points


def supply_demand_svg(symbol: str, orders: list[dict], price: Decimal | None, volume: Decimal) -> str:
    """Demand (bids, highest first) and supply (asks, lowest first) as cumulative quantity against
    limit price; the clearing price as a dashed line and the traded volume as a dotted one."""
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    for order in orders:
        side = bids if order["side"] == "buy" else asks
        level = Decimal(order["price"])
        side[level] = side.get(level, Decimal(0)) + Decimal(order["quantity"])
    demand = _steps(sorted(bids.items(), reverse=True))
    supply = _steps(sorted(asks.items()))
    everything = demand + supply + ([(volume, price)] if price is not None else [])
    if not everything:
        return ""
    max_q = max(q for q, _ in everything) or Decimal(1)
    low, high = min(p for _, p in everything), max(p for _, p in everything)
    span = (high - low) or Decimal(1)

    def xy(quantity: Decimal, level: Decimal) -> str:
        x = PAD + float(quantity / max_q) * (WIDTH - 2 * PAD)
        y = HEIGHT - PAD - float((level - low) / span) * (HEIGHT - 2 * PAD)
        return f"{x:.1f},{y:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'style="background:#fff;border:1px solid #ccc;margin:4px">',
             f'<text x="{PAD}" y="16" font-size="12">{escape(symbol)}</text>',
             f'<polyline fill="none" stroke="#2a7" stroke-width="2" points="{" ".join(xy(q, p) for q, p in demand)}"/>',
             f'<polyline fill="none" stroke="#c33" stroke-width="2" points="{" ".join(xy(q, p) for q, p in supply)}"/>',
             f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" font-size="10" text-anchor="end">quantity (max {max_q})</text>',
             f'<text x="4" y="{PAD - 6}" font-size="10">{high}</text>',
             f'<text x="4" y="{HEIGHT - PAD + 12}" font-size="10">{low}</text>']
    if price is not None:
        y = xy(Decimal(0), price).split(",")[1]
        x = xy(volume, price).split(",")[0]
        parts.append(f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y}" y2="{y}" stroke="#333" stroke-dasharray="4 3"/>')
        parts.append(f'<line x1="{x}" x2="{x}" y1="{PAD}" y2="{HEIGHT - PAD}" stroke="#333" stroke-dasharray="1 3"/>')
        parts.append(f'<text x="{WIDTH - PAD}" y="{float(y) - 4:.1f}" font-size="10" text-anchor="end">'
                     f'price {price}, volume {volume}</text>')
    parts.append(f'<text x="{WIDTH - PAD - 60}" y="30" font-size="10" fill="#2a7">demand</text>')
    parts.append(f'<text x="{WIDTH - PAD - 60}" y="42" font-size="10" fill="#c33">supply</text>')
    parts.append("</svg>")
    return "".join(parts)
