"""The evaluation report's fairness section: one block per ``--slice-by`` attribute."""

from __future__ import annotations

from html import escape
from typing import Any

GAPS_SHOWN = 12


def _value(v: Any) -> str:
    return "<i>(missing)</i>" if v is None else escape(str(v))


def _ci(ci: list[float] | None) -> str:
    return "" if ci is None else f' <span class="muted">[{ci[0]:.3f}, {ci[1]:.3f}]</span>'


def slices_section(r: dict[str, Any]) -> str:
    from autovision.evaluation.report import _fmt, _section, _table

    slices = r.get("slices")
    if not slices:
        return ""
    blocks = []
    for key, s in slices.items():
        head = ["value", "images", "accuracy (95% CI)", "macro F1", "support"]
        rows = [
            [
                _value(x["value"]),
                str(x["images"]),
                _fmt(x["accuracy"]) + _ci(x["accuracy_ci"]),
                _fmt(x["macro"]["f1"]),
                "insufficient" if x["insufficient_support"] else "ok",
            ]
            for x in s["values"]
        ]
        classes = ["flag" if x["flagged"] else "" for x in s["values"]]
        gaps = sorted(s["gaps"].items(), key=lambda kv: (not kv[1]["flagged"], -kv[1]["gap"]))
        grows = [
            [
                escape(metric),
                f"{g['gap']:.3f}" + _ci(g["gap_ci"]),
                f"{_value(g['between'][0])} ({g['figures'][0]:.3f}, n={g['support'][0]})",
                f"{_value(g['between'][1])} ({g['figures'][1]:.3f}, n={g['support'][1]})",
                "FLAGGED" if g["flagged"] else ("" if g["enough_support"] else "too few images"),
            ]
            for metric, g in gaps[:GAPS_SHOWN]
        ]
        gclasses = ["flag" if g["flagged"] else "" for _, g in gaps[:GAPS_SHOWN]]
        flagged = ", ".join(escape(m) for m in s["flagged"]) or "none"
        blocks.append(
            f'<h3 id="slices-{escape(key)}">By {escape(key)}</h3>'
            f'<p class="flags">Flagged gaps: <b>{flagged}</b>.</p>'
            + _table(head, rows, classes)
            + "<p></p>"
            + _table(
                ["metric", "largest gap (95% CI)", "best value", "worst value", ""], grows, gclasses
            )  # fmt: skip
        )
    first = next(iter(slices.values()))
    intro = (
        f'<p class="muted">Per value of each metadata attribute; intervals are 95% bootstrap '
        f"({first['resamples']} resamples). A gap is flagged when it exceeds "
        f"{first['max_gap']:.3f} and both values have at least {first['min_support']} images "
        "for that metric (images; of the label for recall; predicted as it for precision). "
        "Values with fewer images are marked insufficient and not merged.</p>"
    )
    return _section("Fairness by slice", intro + "".join(blocks), "slices")
