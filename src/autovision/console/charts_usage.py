"""A horizontal bar chart as geometry for an inline SVG (the usage page's; the template
draws it, so every label is escaped by Jinja like any other text). Kept minimal until the
console's shared ``charts`` module lands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str  # the value as shown beside the bar
    kind: str = ""  # a CSS class suffix (colour by kind)


def hbars(
    bars: Sequence[Bar],
    *,
    width: int = 760,
    label_width: int = 210,
    value_width: int = 90,
    bar_height: int = 18,
    gap: int = 8,
    max_label: int = 30,
) -> dict:
    """``{"width", "height", "rows": [{"y", "w", "label", "short", "text", "kind", ...}]}``:
    one row per bar, lengths proportional to the largest value (a zero-length bar for 0)."""
    top = max((b.value for b in bars), default=0.0) or 1.0
    span = width - label_width - value_width
    rows = []
    for i, b in enumerate(bars):
        y = i * (bar_height + gap)
        w = max(0.0, b.value) / top * span
        short = b.label if len(b.label) <= max_label else b.label[: max_label - 1] + "…"
        rows.append(
            {
                "y": y,
                "mid": y + bar_height / 2,
                "x": label_width,
                "w": round(w, 2),
                "value_x": round(label_width + w + 6, 2),
                "label": b.label,
                "short": short,
                "text": b.text,
                "kind": b.kind,
            }
        )
    height = max(0, len(bars) * (bar_height + gap) - gap)
    return {"width": width, "height": height, "bar_height": bar_height, "rows": rows}
