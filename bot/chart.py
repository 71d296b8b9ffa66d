"""A small PNG chart of the 7-day spend by tool (stacked bars), drawn with Pillow.

Pillow rather than matplotlib: one bar chart does not justify a plotting stack, and Pillow's
output is small (a few KB) and byte-for-byte reproducible.
"""

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from orchestration.opsmetrics import DaySpend

WIDTH, HEIGHT = 640, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 150, 36, 36
MAX_SERIES = 5  # the top tools; the rest are summed as "other"
PALETTE = ("#2f6fbd", "#e8912d", "#3aa365", "#c9463d", "#8a64c2", "#8c8c8c")
BACKGROUND, INK, GRID = "#ffffff", "#1d2b3a", "#e3e6ea"
OTHER = "other"


def _series(trend: Sequence[DaySpend]) -> list[str]:
    totals: dict[str, float] = {}
    for day in trend:
        for amount in day.by_tool:
            totals[amount.key] = totals.get(amount.key, 0.0) + amount.usd
    ranked = sorted(totals, key=lambda k: (-totals[k], k))
    names = ranked[:MAX_SERIES]
    if len(ranked) > MAX_SERIES:
        names.append(OTHER)
    return names


def _money(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def spend_chart(trend: Sequence[DaySpend], *, title: str) -> bytes:
    """PNG bytes: one stacked bar a day, one colour a tool, a legend on the right."""
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((MARGIN_LEFT, 10), title, fill=INK, font=font)
    names = _series(trend)
    colour = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    peak = max((d.usd for d in trend), default=0.0)
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    for tick in range(5):
        y = bottom - (bottom - top) * tick / 4
        draw.line([(left, y), (right, y)], fill=GRID)
        label = _money(peak * tick / 4) if peak else "$0"
        draw.text((6, y - 6), label, fill=INK, font=font)
    slot = (right - left) / max(len(trend), 1)
    for index, day in enumerate(trend):
        x0 = left + index * slot + slot * 0.2
        x1 = left + (index + 1) * slot - slot * 0.2
        y = float(bottom)
        amounts = {a.key: a.usd for a in day.by_tool}
        stack = [(n, amounts.pop(n, 0.0)) for n in names if n != OTHER]
        if OTHER in names:
            stack.append((OTHER, sum(amounts.values())))
        for name, value in stack:
            if value <= 0 or peak <= 0:
                continue
            height = (bottom - top) * value / peak
            draw.rectangle([(x0, y - height), (x1, y)], fill=colour[name])
            y -= height
        draw.text((x0, bottom + 8), f"{day.day:%a %d}", fill=INK, font=font)
    for index, name in enumerate(names):
        y = top + index * 20
        draw.rectangle([(right + 16, y), (right + 28, y + 12)], fill=colour[name])
        draw.text((right + 34, y), name[:18], fill=INK, font=font)
    if not names:
        draw.text((left + 10, (top + bottom) // 2), "no spend in these 7 days", fill=INK, font=font)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
