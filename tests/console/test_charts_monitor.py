"""The Monitor page's SVG charts: gaps for empty buckets, lone values as dots, text escaped."""

from __future__ import annotations

from autovision.console import charts_monitor as charts


def test_line_chart_breaks_at_missing_values_and_dots_lone_ones():
    svg = str(charts.line_chart([0.5, 0.6, None, 0.9, None], list("abcde"), title="t", y_max=1))
    assert svg.startswith('<svg class="chart"') and svg.count("<polyline") == 1
    assert svg.count('r="2.5"') == 3  # every value of a short series has its dot


def test_many_buckets_keep_only_lone_dots():
    values = [1.0] * 100 + [None, 2.0, None]
    svg = str(charts.line_chart(values, [str(i) for i in range(103)], title="t"))
    assert svg.count('r="2.5"') == 1 and svg.count("<polyline") == 1


def test_text_is_escaped():
    evil = "<img src=x onerror=alert(1)>"
    svg = str(charts.paired_bars([evil, "b"], [0.5, 0.5], [0.2, 0.8], title=f"t {evil}"))
    assert "<img" not in svg and "&lt;img src=x" in svg
    svg = str(charts.line_chart([1, 2], [evil, "x"], title=evil))
    assert "<img" not in svg
