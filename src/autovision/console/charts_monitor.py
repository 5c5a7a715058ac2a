"""Inline SVG charts of the Monitor page (server-side, no chart library, no script): a line
chart of a value over time buckets and paired bars (reference vs recent). Text is escaped
here; the result is ``Markup`` so templates embed it as markup. Colours are presentation
attributes (the CSP allows no inline styles). To be unified with ``console/charts.py``."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

W, H = 560, 170
PAD_L, PAD_R, PAD_T, PAD_B = 46, 12, 14, 28
BLUE, RED, GRID, MUTED = "#2563eb", "#dc2626", "#e3e6ea", "#66717f"


def _fmt(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:.1f}k".replace(".0k", "k")
    return f"{v:.2f}".rstrip("0").rstrip(".") if v % 1 else str(int(v))


def line_chart(
    values: Sequence[float | None],
    ticks: Sequence[str],
    *,
    title: str,
    y_max: float | None = None,
    color: str = BLUE,
    unit: str = "",
) -> Markup:
    """``values`` per bucket (None: no data, a gap in the line), ``ticks`` their labels."""
    n = len(values)
    top = y_max if y_max is not None else max([v for v in values if v is not None] or [0]) or 1
    iw, ih = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def x(i: int) -> float:
        return PAD_L + (iw * i / (n - 1) if n > 1 else iw / 2)

    def y(v: float) -> float:
        return PAD_T + ih * (1 - v / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for frac in (0, 0.5, 1):
        gy = y(top * frac)
        parts.append(
            f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="{GRID}"/>'
        )
        parts.append(
            f'<text x="{PAD_L - 6}" y="{gy + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{MUTED}">{escape(_fmt(top * frac))}{escape(unit)}</text>'
        )
    segment: list[str] = []
    segments: list[list[str]] = []
    for i, v in enumerate(values):
        if v is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        segment.append(f"{x(i):.1f},{y(v):.1f}")
    if segment:
        segments.append(segment)
    for seg in segments:
        if len(seg) > 1:
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                f'stroke-linejoin="round" points="{" ".join(seg)}"/>'
            )
    for i, v in enumerate(values):
        if v is not None:
            alone = (i == 0 or values[i - 1] is None) and (i == n - 1 or values[i + 1] is None)
            if n <= 60 or alone:  # dots where they stay readable; a lone value is only a dot
                parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}"/>')
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="6" fill="transparent">'
                f"<title>{escape(ticks[i])}: {escape(_fmt(v))}{escape(unit)}</title></circle>"
            )
    shown = sorted({0, n - 1, n // 2} if n > 2 else set(range(n)))
    for i in shown:
        anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
        parts.append(
            f'<text x="{x(i):.1f}" y="{H - 8}" text-anchor="{anchor}" font-size="11" '
            f'fill="{MUTED}">{escape(ticks[i])}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def paired_bars(
    names: Sequence[str],
    reference: Sequence[float],
    recent: Sequence[float],
    *,
    title: str,
    name_every: int = 1,
) -> Markup:
    """Reference (blue) and recent (red) shares side by side per bin or label."""
    w, h = 340, 170
    pl, pr, pt, pb = 34, 8, 22, 34
    n = max(len(names), 1)
    top = max([*reference, *recent, 0.0]) or 1.0
    iw, ih = w - pl - pr, h - pt - pb
    slot = iw / n
    bar = max(slot * 0.38, 1.0)
    parts = [
        f'<svg class="chart small-chart" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<text x="{pl}" y="13" font-size="12" font-weight="600" fill="#1f2933">'
        f"{escape(title)}</text>",
        f'<line x1="{pl}" x2="{w - pr}" y1="{pt + ih}" y2="{pt + ih}" stroke="{GRID}"/>',
        f'<text x="{pl - 4}" y="{pt + 8}" text-anchor="end" font-size="10" fill="{MUTED}">'
        f"{escape(_fmt(round(top, 2)))}</text>",
    ]
    for i, name in enumerate(names):
        x0 = pl + slot * i + slot * 0.1
        for j, (vals, color, who) in enumerate(
            ((reference, BLUE, "reference"), (recent, RED, "recent"))
        ):
            v = float(vals[i]) if i < len(vals) else 0.0
            bh = ih * v / top
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{pt + ih - bh:.1f}" width="{bar:.1f}" '
                f'height="{bh:.1f}" fill="{color}" fill-opacity="0.75">'
                f"<title>{escape(str(name))} {who}: {v:.3f}</title></rect>"
            )
        if i % name_every == 0:
            parts.append(
                f'<text x="{x0 + bar:.1f}" y="{h - pb + 14}" text-anchor="middle" font-size="10" '
                f'fill="{MUTED}">{escape(str(name)[:10])}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram(hist: dict, *, title: str) -> Markup:
    """A stored histogram (``edges``, ``reference``, ``recent``) as paired bars."""
    edges = hist["edges"]
    names = [_fmt(round((a + b) / 2, 2)) for a, b in zip(edges, edges[1:], strict=False)]
    return paired_bars(names, hist["reference"], hist["recent"], title=title, name_every=5)
