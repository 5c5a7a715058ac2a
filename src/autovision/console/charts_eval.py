"""Inline SVG charts of the model page (server-side, no chart library, no inline styles:
presentation attributes only, which the console's CSP allows). Text is escaped here;
the returned strings are markup."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from markupsafe import Markup

COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777",
          "#65a30d", "#ea580c", "#4f46e5"]  # fmt: skip
INK, GRID, MUTED = "#111827", "#e5e7eb", "#6b7280"
W, H = 440, 300
LEFT, RIGHT, TOP, BOTTOM = 46, 14, 14, 40


def _x(v: float) -> float:
    return round(LEFT + v * (W - LEFT - RIGHT), 2)


def _y(v: float) -> float:
    return round(H - BOTTOM - v * (H - TOP - BOTTOM), 2)


def _frame(x_label: str, y_label: str, title: str) -> list[str]:
    out = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(6):
        v = i / 5
        out.append(
            f'<line x1="{_x(0)}" y1="{_y(v)}" x2="{_x(1)}" y2="{_y(v)}" stroke="{GRID}"/>'
            f'<text x="{LEFT - 6}" y="{_y(v) + 4}" text-anchor="end" font-size="11" '
            f'fill="{MUTED}">{v:.1f}</text>'
            f'<text x="{_x(v)}" y="{H - BOTTOM + 16}" text-anchor="middle" font-size="11" '
            f'fill="{MUTED}">{v:.1f}</text>'
        )
    out.append(
        f'<text x="{_x(0.5)}" y="{H - 6}" text-anchor="middle" font-size="12" '
        f'fill="{INK}">{escape(x_label)}</text>'
        f'<text x="12" y="{_y(0.5)}" text-anchor="middle" font-size="12" fill="{INK}" '
        f'transform="rotate(-90 12 {_y(0.5)})">{escape(y_label)}</text>'
    )
    return out


def _polyline(points: Sequence[Sequence[float | None]], color: str, width: float, dash: str = ""):
    runs, run = [], []
    for x, y in points:
        if y is None:
            runs.append(run)
            run = []
        else:
            run.append(f"{_x(x)},{_y(y)}")
    runs.append(run)
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return "".join(
        f'<polyline fill="none" stroke="{color}" stroke-width="{width}"{extra} '
        f'points="{" ".join(r)}"/>'
        for r in runs
        if r
    )


def legend(entries: Sequence[tuple[str, str]]) -> Markup:
    """An HTML legend: (colour, text) pairs, the text escaped."""
    items = "".join(
        '<li><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" '
        f'rx="2" fill="{color}"/></svg> {escape(text)}</li>'
        for color, text in entries
    )
    return Markup(f'<ul class="legend">{items}</ul>')


def pr_chart(curves: dict[str, Any]) -> tuple[Markup, Markup]:
    """Precision-recall curves (per label, and the micro average in black): (svg, legend)."""
    out = _frame("Recall", "Precision", "Precision-recall curves")
    entries = []
    for n, c in enumerate(curves["per_label"]):
        color = COLORS[n % len(COLORS)]
        out.append(_polyline(c["points"], color, 1.6))
        entries.append((color, f"{c['label']} (AP {c['ap']:.3f})"))
    if curves.get("micro"):
        out.append(_polyline(curves["micro"]["points"], INK, 2.4))
        entries.append((INK, f"micro average (AP {curves['micro']['ap']:.3f})"))
    if not entries:
        out.append(
            f'<text x="{_x(0.5)}" y="{_y(0.5)}" text-anchor="middle" fill="{MUTED}">'
            "undefined for this split</text>"
        )
    out.append("</svg>")
    return Markup("".join(out)), legend(entries)


THRESHOLD_SERIES = (
    ("precision", "#2563eb", ""),
    ("recall", "#dc2626", ""),
    ("f1", "#16a34a", ""),
    ("coverage", MUTED, "5 4"),
)


def threshold_chart(rows: Sequence[dict[str, Any]], marker: float) -> tuple[Markup, Markup]:
    """Micro precision, recall, F1 and coverage against the threshold, with a vertical
    marker (``#threshold-marker``) the slider moves."""
    out = _frame("Confidence threshold", "Value", "Precision and recall vs threshold")
    for key, color, dash in THRESHOLD_SERIES:
        out.append(_polyline([(r["threshold"], r[key]) for r in rows], color, 1.8, dash))
    out.append(
        f'<line id="threshold-marker" x1="{_x(marker)}" y1="{_y(0)}" x2="{_x(marker)}" '
        f'y2="{_y(1)}" stroke="{INK}" stroke-width="1.5" stroke-dasharray="3 3" '
        f'data-x0="{LEFT}" data-x1="{W - RIGHT}"/>'
    )
    out.append("</svg>")
    return Markup("".join(out)), legend([(c, k) for k, c, _ in THRESHOLD_SERIES])


def calibration_chart(cal: dict[str, Any]) -> Markup:
    """Reliability diagram: accuracy per confidence bin (bars) against the diagonal."""
    out = _frame("Confidence", "Accuracy", f"Calibration (ECE {cal['ece']:.3f})")
    out.append(
        f'<line x1="{_x(0)}" y1="{_y(0)}" x2="{_x(1)}" y2="{_y(1)}" stroke="{MUTED}" '
        'stroke-dasharray="4 4"/>'
    )
    for b in cal["bins"]:
        if not b["count"]:
            continue
        x0, x1 = _x(b["lower"]) + 1, _x(b["upper"]) - 1
        y = _y(b["accuracy"])
        out.append(
            f'<rect x="{x0}" y="{y}" width="{round(x1 - x0, 2)}" height="{round(_y(0) - y, 2)}" '
            f'fill="#2563eb" fill-opacity="0.75"><title>{b["lower"]:.1f}-{b["upper"]:.1f}: '
            f"{b['count']} at accuracy {b['accuracy']:.2f}, mean confidence "
            f"{b['confidence']:.2f}</title></rect>"
        )
    out.append("</svg>")
    return Markup("".join(out))
