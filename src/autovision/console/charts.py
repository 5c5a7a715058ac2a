"""Charts as inline SVG made on the server: no chart library, no script, nothing the CSP
has to allow (presentation attributes only, no ``style=``).

- :func:`bar_chart`: horizontal bars, one row per category, stacked by series (images per
  label and split on the dataset version page).
- :func:`line_chart`: series of (x, y) points, x numbers or datetimes (time series: prediction
  volume, confidence, drift).
- :func:`pr_curve`: precision against recall on fixed 0..1 axes, one curve per label.

Every text that may come from a user (labels, series names) is escaped here; the result is
:class:`markupsafe.Markup`, safe to place in a template as is. Each chart has ``role="img"``
and an ``aria-label``, and each mark a ``<title>`` (the numbers on hover); pages still show
the numbers in a table beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from markupsafe import Markup, escape

__all__ = ["PALETTE", "SPLIT_COLORS", "bar_chart", "line_chart", "nice_ticks", "pr_curve"]

PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9", "#84cc16", "#ec4899")
SPLIT_COLORS = {
    "train": "#2563eb",
    "validation": "#f59e0b",
    "test": "#10b981",
    "unassigned": "#9ca3af",
}
TEXT = "#1f2933"
MUTED = "#66717f"
GRID = "#e5e7eb"
FONT = 'font-family="system-ui, sans-serif"'
LABEL_CHARS = 24


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _fmt(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.3g}"


def _short(text: str, n: int = LABEL_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _color(name: str, i: int, colors: Mapping[str, str] | None) -> str:
    return (colors or {}).get(name) or PALETTE[i % len(PALETTE)]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``lo``..``hi`` (1, 2 or 5 times a power of 10)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def _legend(names: Sequence[str], colors: Mapping[str, str] | None, x: float, y: float) -> str:
    parts, cx = [], x
    for i, name in enumerate(names):
        parts.append(
            f'<rect x="{_num(cx)}" y="{_num(y - 9)}" width="10" height="10" rx="2" '
            f'fill="{_color(name, i, colors)}"/>'
            f'<text x="{_num(cx + 14)}" y="{_num(y)}" font-size="12" fill="{TEXT}">'
            f"{escape(_short(name, 18))}</text>"
        )
        cx += 24 + 7 * min(len(name), 18)
    return "".join(parts)


def bar_chart(
    rows: Sequence[tuple[str, Mapping[str, float]]],
    series: Sequence[str],
    *,
    colors: Mapping[str, str] | None = None,
    title: str = "",
    unit: str = "",
    width: int = 720,
    row_height: int = 22,
    highlight: Mapping[str, str] | None = None,
) -> Markup:
    """Horizontal bars, one per ``(category, {series: value})`` row, segments stacked in
    the order of ``series``, the row's total at its end. ``highlight``: category -> colour
    of its name (a label with too few images in red)."""
    label_w = 170
    total_w = 64
    top = 30 if len(series) > 1 else 8
    plot_w = max(width - label_w - total_w, 60)
    totals = [sum(float(v.get(s, 0) or 0) for s in series) for _, v in rows]
    biggest = max(totals, default=0) or 1
    height = top + row_height * max(len(rows), 1) + 8
    what = f"{title}: " if title else ""
    aria = f"{what}{len(rows)} rows" + (f", stacked by {', '.join(series)}" if series else "")
    out = [
        f'<svg class="chart bar-chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'aria-label="{escape(aria)}" {FONT}>'
    ]
    if title:
        out.append(f"<title>{escape(title)}</title>")
    if len(series) > 1:
        out.append(_legend(series, colors, label_w, 16))
    for r, ((name, values), total) in enumerate(zip(rows, totals, strict=True)):
        y = top + r * row_height
        bar_y, bar_h = y + 3, row_height - 6
        fill = (highlight or {}).get(name, TEXT)
        out.append(
            f'<text x="{label_w - 8}" y="{_num(y + row_height / 2 + 4)}" text-anchor="end" '
            f'font-size="12" fill="{fill}"><title>{escape(name)}</title>'
            f"{escape(_short(name))}</text>"
        )
        out.append(
            f'<rect x="{label_w}" y="{bar_y}" width="{plot_w}" height="{bar_h}" fill="#f3f4f6" '
            'rx="2"/>'
        )
        x = float(label_w)
        for i, s in enumerate(series):
            v = float(values.get(s, 0) or 0)
            if v <= 0:
                continue
            w = plot_w * v / biggest
            tip = f"{name}: {_fmt(v)} {unit} in {s}".replace("  ", " ")
            out.append(
                f'<rect x="{_num(x)}" y="{bar_y}" width="{_num(max(w, 0.5))}" height="{bar_h}" '
                f'fill="{_color(s, i, colors)}"><title>{escape(tip)}</title></rect>'
            )
            x += w
        out.append(
            f'<text x="{_num(x + 6)}" y="{_num(y + row_height / 2 + 4)}" font-size="12" '
            f'fill="{MUTED}">{_fmt(total)}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def _x_value(x: Any) -> float:
    if isinstance(x, datetime):
        return x.timestamp()
    if isinstance(x, date):
        return datetime(x.year, x.month, x.day).timestamp()
    return float(x)


def _x_label(value: float, span: float, is_time: bool) -> str:
    if not is_time:
        return _fmt(round(value, 6))
    when = datetime.fromtimestamp(value)
    if span <= 2 * 86400:
        return when.strftime("%H:%M")
    if span <= 90 * 86400:
        return when.strftime("%b %d")
    return when.strftime("%Y-%m")


def line_chart(
    series: Mapping[str, Sequence[tuple[Any, float]]],
    *,
    colors: Mapping[str, str] | None = None,
    title: str = "",
    y_label: str = "",
    x_label: str = "",
    width: int = 720,
    height: int = 260,
    y_range: tuple[float, float] | None = None,
    x_range: tuple[float, float] | None = None,
    points: bool = True,
) -> Markup:
    """Lines of ``{name: [(x, y), ...]}``; x are numbers or datetimes (then the axis shows
    times or dates). ``y_range``/``x_range`` fix an axis (else from the data, y from 0
    when all values are positive)."""
    left, right, top, bottom = 52, 16, 30 if len(series) > 1 or title else 12, 40
    pw, ph = width - left - right, height - top - bottom
    pts = [(_x_value(x), float(y)) for data in series.values() for x, y in data]
    is_time = any(isinstance(x, date) for data in series.values() for x, _ in data)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = x_range or ((min(xs), max(xs)) if xs else (0.0, 1.0))
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    if y_range is not None:
        y0, y1 = y_range
        y_ticks = nice_ticks(y0, y1)
        y_ticks = [t for t in y_ticks if y0 - 1e-9 <= t <= y1 + 1e-9]
    else:
        lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        lo = min(lo, 0.0) if lo >= 0 else lo
        y_ticks = nice_ticks(lo, hi if hi > lo else lo + 1)
        y0, y1 = y_ticks[0], y_ticks[-1]

    def px(x: float) -> float:
        return left + pw * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        return top + ph - ph * (y - y0) / ((y1 - y0) or 1)

    aria = (f"{title}: " if title else "") + f"{len(series)} series"
    out = [
        f'<svg class="chart line-chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'aria-label="{escape(aria)}" {FONT}>'
    ]
    if title:
        out.append(f"<title>{escape(title)}</title>")
    for t in y_ticks:
        y = py(t)
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{_num(y)}" y2="{_num(y)}" stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{_num(y + 4)}" text-anchor="end" font-size="11" '
            f'fill="{MUTED}">{_fmt(round(t, 6))}</text>'
        )
    x_ticks = [t for t in nice_ticks(x0, x1, 6) if x0 - 1e-9 <= t <= x1 + 1e-9] or [x0, x1]
    for t in x_ticks:
        x = px(t)
        out.append(
            f'<line x1="{_num(x)}" x2="{_num(x)}" y1="{top + ph}" y2="{top + ph + 4}" '
            f'stroke="{MUTED}"/><text x="{_num(x)}" y="{top + ph + 16}" text-anchor="middle" '
            f'font-size="11" fill="{MUTED}">{escape(_x_label(t, x1 - x0, is_time))}</text>'
        )
    out.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="{MUTED}"/>'
    )
    if x_label:
        out.append(
            f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle" font-size="11" '
            f'fill="{MUTED}">{escape(x_label)}</text>'
        )
    if y_label:
        out.append(
            f'<text x="12" y="{top + ph / 2}" text-anchor="middle" font-size="11" '
            f'fill="{MUTED}" transform="rotate(-90 12 {top + ph / 2})">{escape(y_label)}</text>'
        )
    for i, (name, data) in enumerate(series.items()):
        color = _color(name, i, colors)
        coords = [(px(_x_value(x)), py(float(y)), x, float(y)) for x, y in data]
        if len(coords) > 1:
            path = " ".join(f"{_num(a)},{_num(b)}" for a, b, _, _ in coords)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2" '
                f'stroke-linejoin="round"><title>{escape(name)}</title></polyline>'
            )
        if points and len(coords) <= 200:
            for a, b, x, y in coords:
                shown = x.isoformat(sep=" ", timespec="minutes") if isinstance(x, datetime) else x
                tip = f"{name}: {_fmt(round(y, 6))} at {shown}"
                out.append(
                    f'<circle cx="{_num(a)}" cy="{_num(b)}" r="2.5" fill="{color}">'
                    f"<title>{escape(tip)}</title></circle>"
                )
    if len(series) > 1:
        out.append(_legend(list(series), colors, left, 16))
    out.append("</svg>")
    return Markup("".join(out))


def pr_curve(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    *,
    colors: Mapping[str, str] | None = None,
    title: str = "Precision / recall",
    width: int = 420,
    height: int = 320,
) -> Markup:
    """Precision (y) against recall (x), ``{label: [(recall, precision), ...]}``, both axes
    0..1; points sorted by recall."""
    ordered = {name: sorted(points) for name, points in curves.items()}
    return line_chart(
        ordered,
        colors=colors,
        title=title,
        x_label="recall",
        y_label="precision",
        width=width,
        height=height,
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.0),
        points=False,
    )
