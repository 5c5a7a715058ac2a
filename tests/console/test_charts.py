"""console/charts.py: inline SVG bar, line and PR charts with escaped text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

from markupsafe import Markup

from autovision.console import charts

XSS = "<img src=x onerror=alert(1)>"
NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML: every text escaped


def test_bar_chart_stacks_series_and_escapes_labels():
    svg = charts.bar_chart(
        [("cat", {"train": 8, "test": 2}), (XSS, {"train": 1}), ("dog", {})],
        ["train", "test"],
        colors=charts.SPLIT_COLORS,
        title="Images & labels",
        highlight={XSS: "#b42318"},
    )
    assert isinstance(svg, Markup) and XSS not in svg and "&lt;img src=x" in svg
    root = parse(str(svg))
    assert root.get("role") == "img" and "Images &" in root.get("aria-label")
    bars = [r for r in root.iter(f"{NS}rect") if r.find(f"{NS}title") is not None]
    assert len(bars) == 3  # zero-valued segments are not drawn
    widths = [float(r.get("width")) for r in bars]
    assert widths[0] == 4 * widths[1] and widths[0] == 8 * widths[2]
    assert bars[0].get("fill") == charts.SPLIT_COLORS["train"]
    assert "style" not in str(svg)  # the CSP forbids inline styles
    texts = ["".join(t.itertext()) for t in root.iter(f"{NS}text")]
    assert "10" in texts and "0" in texts


def test_bar_chart_empty_and_long_labels():
    assert "<svg" in charts.bar_chart([], ["train"])
    long = "x" * 80
    svg = str(charts.bar_chart([(long, {"a": 1})], ["a"]))
    assert f"<title>{long}</title>" in svg and "…" in svg


def test_line_chart_numbers_and_times():
    t0 = datetime(2026, 12, 1, 8)
    svg = charts.line_chart(
        {"volume": [(t0 + timedelta(hours=h), h * 3) for h in range(6)], XSS: [(t0, 1.0)]},
        title="Predictions",
        y_label="per hour",
    )
    root = parse(str(svg))
    assert len(list(root.iter(f"{NS}polyline"))) == 1 and XSS not in svg
    assert "08:00" in svg or "10:00" in svg  # a time axis
    plain = parse(str(charts.line_chart({"a": [(0, 0.5), (10, 0.7)]}, y_range=(0, 1))))
    assert len(list(plain.iter(f"{NS}circle"))) == 2


def test_pr_curve_has_unit_axes():
    svg = str(
        charts.pr_curve({"cat": [(1.0, 0.5), (0.0, 1.0), (0.5, 0.9)], XSS: [(0, 1), (1, 0.2)]})
    )
    root = parse(svg)
    assert len(list(root.iter(f"{NS}polyline"))) == 2 and "recall" in svg and "precision" in svg
    assert XSS not in svg


def test_nice_ticks():
    assert charts.nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert charts.nice_ticks(0, 1)[-1] >= 1
    assert charts.nice_ticks(5, 5)  # a flat series still gets an axis
