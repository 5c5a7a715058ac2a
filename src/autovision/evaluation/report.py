"""The evaluation report: one self-contained HTML file (no scripts, no CDN, images inline).

Sections: summary, notes, per-label table, confusion matrix heat map, most confused pairs
and worst errors (thumbnails), ROC and PR curves, precision/recall vs threshold, calibration,
the split's class distribution and, with ``--slice-by``, the slices.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from autovision.evaluation import _plots
from autovision.evaluation._slices_html import slices_section
from autovision.evaluation.metrics import as_probs, indicator
from autovision.evaluation.predictions import SplitPredictions

THUMB = 112
PAIRS_SHOWN = 6
EXAMPLES_SHOWN = 4

CSS = """
:root { --fg:#111827; --muted:#6b7280; --line:#e5e7eb; --bg:#f9fafb; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:var(--fg); background:var(--bg); }
main { max-width:1180px; margin:0 auto; padding:24px 28px 64px; }
h1 { font-size:24px; margin:0 0 4px; } h2 { font-size:18px; margin:0 0 12px; }
.sub { color:var(--muted); margin:0 0 20px; }
section { background:#fff; border:1px solid var(--line); border-radius:10px;
  padding:18px 20px; margin:0 0 18px; }
.cards { display:grid; grid-template-columns:repeat(auto-fill,minmax(150px,1fr)); gap:12px; }
.card { border:1px solid var(--line); border-radius:8px; padding:10px 12px; }
.card .v { font-size:22px; font-weight:600; } .card .k { color:var(--muted); font-size:12px; }
table { border-collapse:collapse; font-variant-numeric:tabular-nums; }
table.data { width:100%; }
table.data th, table.data td { padding:5px 10px; border-bottom:1px solid var(--line);
  text-align:right; }
table.data th:first-child, table.data td:first-child { text-align:left; }
table.data thead th { color:var(--muted); font-weight:600; font-size:12px; }
tr.flag td { background:#fef2f2; }
.scroll { overflow:auto; max-width:100%; }
#confusion-matrix td, #confusion-matrix th { padding:0; text-align:center; font-size:13px; }
#confusion-matrix td { min-width:52px; height:40px; border:1px solid #fff; }
#confusion-matrix th.corner { font-size:11px; color:var(--muted); font-weight:400;
  text-align:right; vertical-align:bottom; padding:0 8px 6px 0; white-space:nowrap; }
#confusion-matrix th.row { text-align:right; padding-right:8px; white-space:nowrap; }
#confusion-matrix th.col { writing-mode:vertical-rl; transform:rotate(180deg);
  padding:6px 0; white-space:nowrap; font-weight:500; }
.axis { color:var(--muted); font-size:12px; }
.plots { display:grid; grid-template-columns:repeat(auto-fit,minmax(360px,1fr)); gap:16px; }
.plots img, section > img { width:100%; max-width:640px; height:auto; }
.thumbs { display:flex; flex-wrap:wrap; gap:12px; }
figure.t { margin:0; width:128px; font-size:11px; color:var(--muted); }
figure.t img { width:128px; height:128px; object-fit:contain; background:#f3f4f6;
  border-radius:6px; display:block; }
figure.t b { color:var(--fg); }
.pair { margin:0 0 14px; }
.bar { height:12px; background:var(--accent); border-radius:3px; min-width:1px; }
.notes li { color:#92400e; } .muted { color:var(--muted); }
details summary { cursor:pointer; color:var(--accent); margin:10px 0; }
"""

ImageLoader = Callable[[Any], Any]  # Item -> RGB PIL image


def write_report(
    path: str | os.PathLike[str],
    result: dict[str, Any],
    preds: SplitPredictions,
    load_image: ImageLoader,
) -> Path:
    """Render and write the report; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(result, preds, load_image), encoding="utf-8")
    return path


def render_report(result: dict[str, Any], preds: SplitPredictions, load_image: ImageLoader) -> str:
    Y = indicator(preds.true_labels, preds.labels)
    P = as_probs(preds.probs, len(preds.labels))
    thumbs = _Thumbs({it.id: it for it in preds.items}, load_image)
    body = [
        _header(result),
        _summary(result),
        _notes(result),
        _per_label(result),
        _confusion(result),
        _confused_pairs(result, thumbs),
        _worst_errors(result, thumbs),
        _section(
            "ROC and precision-recall curves",
            '<div class="plots">'
            f'<img alt="ROC curves" src="{_plots.roc_plot(Y, P, preds.labels, result)}">'
            f'<img alt="PR curves" src="{_plots.pr_plot(Y, P, preds.labels, result)}">'
            "</div>",
            "curves",
        ),
        _thresholds(result),
        _calibration(result),
        _distribution(result),
        slices_section(result),
    ]
    title = escape(f"Evaluation of {result['model']} on {result['dataset']} ({result['split']})")
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<link rel='icon' href='data:,'><title>{title}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


class _Thumbs:
    """Base64 JPEG thumbnails of items, made once per item."""

    def __init__(self, items: dict[Any, Any], load_image: ImageLoader) -> None:
        self.items, self.load_image, self.cache = items, load_image, {}

    def __call__(self, item_id: Any) -> str:
        if item_id not in self.cache:
            img = self.load_image(self.items[item_id]).convert("RGB")
            img.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=85)
            self.cache[item_id] = base64.b64encode(buf.getvalue()).decode("ascii")
        return f"data:image/jpeg;base64,{self.cache[item_id]}"

    def figure(self, item_id: Any, caption: str) -> str:
        source = escape(str(self.items[item_id].source))
        return (
            f'<figure class="t" title="{source}"><img alt="image {escape(str(item_id))}" '
            f'src="{self(item_id)}"><figcaption>{caption}</figcaption></figure>'
        )


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return '<span class="muted">n/a</span>'
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return escape(str(x))


def _section(title: str, inner: str, sid: str = "") -> str:
    ident = f' id="{sid}"' if sid else ""
    return f"<section{ident}><h2>{escape(title)}</h2>{inner}</section>"


def _table(head: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    trs = "".join(
        f'<tr class="{classes[i] if classes else ""}">' + "".join(f"<td>{c}</td>" for c in r)
        + "</tr>"
        for i, r in enumerate(rows)
    )  # fmt: skip
    table = f'<table class="data"><thead><tr>{th}</tr></thead>{trs}</table>'
    return f'<div class="scroll">{table}</div>'


def _header(r: dict[str, Any]) -> str:
    return (
        f"<h1>Evaluation of {escape(r['model'])}</h1>"
        f'<p class="sub">{escape(r["task"])} model on <b>{escape(r["dataset"])}</b>, '
        f"{escape(r['split'])} split, {r['images']} images, {len(r['labels'])} labels "
        f"&middot; {escape(r['evaluated_at'])}</p>"
    )


def _summary(r: dict[str, Any]) -> str:
    cards = [
        ("subset accuracy" if r["task"] == "multi-label" else "accuracy", r["accuracy"]),
        (f"top-{r['top_k']} accuracy", r["top_k_accuracy"]) if r["top_k"] else None,
        ("Hamming loss", r.get("hamming_loss")) if r["task"] == "multi-label" else None,
        ("macro F1", r["macro"]["f1"]),
        ("micro F1", r["micro"]["f1"]),
        ("macro precision", r["macro"]["precision"]),
        ("macro recall", r["macro"]["recall"]),
        ("log loss", r["log_loss"]),
        ("ROC AUC (macro)", r["roc_auc"]["macro"]),
        ("average precision (macro)", r["average_precision"]["macro"]),
        ("calibration error (ECE)", r["calibration"]["ece"]),
        ("images", r["images"]),
    ]
    inner = "".join(
        f'<div class="card"><div class="v">{_fmt(v)}</div><div class="k">{escape(k)}</div></div>'
        for k, v in filter(None, cards)
    )
    return _section("Summary", f'<div class="cards">{inner}</div>', "summary")


def _notes(r: dict[str, Any]) -> str:
    if not r.get("notes"):
        return ""
    items = "".join(f"<li>{escape(n)}</li>" for n in r["notes"])
    return _section("Notes", f'<ul class="notes">{items}</ul>')


def _per_label(r: dict[str, Any]) -> str:
    multi = r["task"] == "multi-label"
    head = ["label", "support", "predicted", "precision", "recall", "F1", "AP", "ROC AUC"]
    head += ["threshold"] if multi else []
    rows = []
    for lab, m in r["per_label"].items():
        row = [escape(lab), str(m["support"]), str(m["predicted"])]
        row += [_fmt(m[k]) for k in ("precision", "recall", "f1", "average_precision", "roc_auc")]
        rows.append(row + ([_fmt(m["threshold"], 2)] if multi else []))
    for avg in ("macro", "micro", "weighted"):
        a = r[avg]
        rows.append([f"<i>{avg} average</i>", "", "", _fmt(a["precision"]), _fmt(a["recall"]),
                     _fmt(a["f1"]), "", ""] + ([""] if multi else []))  # fmt: skip
    return _section("Per label", _table(head, rows), "per-label")


def _confusion(r: dict[str, Any]) -> str:
    labels, matrix = r["confusion_matrix"]["labels"], r["confusion_matrix"]["matrix"]
    head = "".join(f'<th class="col">{escape(lab)}</th>' for lab in labels)
    rows = []
    for i, (lab, row) in enumerate(zip(labels, matrix, strict=True)):
        total = r["per_label"][lab]["support"] or 1
        cells = []
        for j, n in enumerate(row):
            share = n / total
            rgb = "37,99,235" if i == j else "220,38,38"
            color = "#fff" if share > 0.55 else "#111827"
            cells.append(
                f'<td style="background:rgba({rgb},{share:.3f});color:{color}" '
                f'title="true {escape(lab)}, predicted {escape(labels[j])}: {n} '
                f'({share:.0%} of {escape(lab)})">{n if n else ""}</td>'
            )
        rows.append(f'<tr><th class="row">{escape(lab)}</th>{"".join(cells)}</tr>')
    what = (
        "diagonal: true positives of each label; off the diagonal: images where the row's "
        "label was missed while the column's label was wrongly predicted"
        if r["task"] == "multi-label"
        else "rows: true label, columns: predicted label"
    )
    table = (
        f'<p class="axis">{what}; colour = share of the row\'s images</p>'
        '<div class="scroll"><table id="confusion-matrix"><thead><tr>'
        f'<th class="corner">true &darr; predicted &rarr;</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    return _section("Confusion matrix", table, "confusion")


def _confused_pairs(r: dict[str, Any], thumbs: _Thumbs) -> str:
    pairs = r["most_confused"][:PAIRS_SHOWN]
    if not pairs:
        return _section("Most confused pairs", '<p class="muted">No confusions.</p>')
    blocks = []
    for p in pairs:
        figs = "".join(thumbs.figure(i, f"id {escape(str(i))}") for i in p["examples"][:4])
        blocks.append(
            f'<div class="pair"><p><b>{escape(p["true"])}</b> predicted as '
            f"<b>{escape(p['predicted'])}</b>: {p['count']} image(s)</p>"
            f'<div class="thumbs">{figs}</div></div>'
        )
    return _section("Most confused pairs", "".join(blocks), "most-confused")


def _worst_errors(r: dict[str, Any], thumbs: _Thumbs) -> str:
    errors = r["worst_errors"]
    if not errors:
        return _section("Worst errors", '<p class="muted">No errors.</p>')
    figs = "".join(
        thumbs.figure(
            e["id"],
            f"true <b>{escape(', '.join(e['true_labels']) or '-')}</b><br>"
            f"predicted <b>{escape(', '.join(e['predicted_labels']) or '-')}</b><br>"
            f"confidence {e['confidence']:.2f} &middot; id {escape(str(e['id']))}",
        )
        for e in errors
    )
    intro = '<p class="muted">Wrong predictions made with the highest confidence.</p>'
    return _section("Worst errors", f'{intro}<div class="thumbs">{figs}</div>', "worst-errors")


def _thresholds(r: dict[str, Any]) -> str:
    rows = [
        [
            f"{t['threshold']:.2f}",
            _fmt(t["precision"]),
            _fmt(t["recall"]),
            _fmt(t["f1"]),
            _fmt(t["false_positive_rate"]),
            _fmt(t["coverage"]),
        ]  # fmt: skip
        for t in r["confidence_thresholds"]
    ]
    table = _table(["threshold", "precision", "recall", "F1", "false positive rate", "coverage"],
                   rows)  # fmt: skip
    img = _plots.threshold_plot(r["confidence_thresholds"])
    rule = (
        "a prediction counts when the top label's confidence reaches the threshold"
        if r["task"] == "single-label"
        else "a label is predicted when its score reaches the threshold"
    )
    inner = (
        f'<p class="muted">Micro-averaged over labels; {rule}; coverage is the share of '
        f'images with a prediction.</p><img alt="threshold chart" src="{img}">'
        f"<details><summary>Table of all thresholds</summary>{table}</details>"
    )
    return _section("Precision and recall vs confidence threshold", inner, "thresholds")


def _calibration(r: dict[str, Any]) -> str:
    cal = r["calibration"]
    inner = (
        f'<p class="muted">Expected calibration error {cal["ece"]:.4f}, maximum '
        f"{cal['mce']:.4f} ({escape(cal['kind'])}, {cal['n_bins']} bins).</p>"
        f'<img alt="calibration plot" src="{_plots.calibration_plot(cal)}">'
    )
    return _section("Calibration", inner, "calibration")


def _distribution(r: dict[str, Any]) -> str:
    counts = r["label_counts"]
    top = max(counts.values(), default=0) or 1
    rows = [
        [escape(lab), str(n), f'<div class="bar" style="width:{100 * n / top:.1f}%"></div>']
        for lab, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    table = _table(["label", "images", ""], rows)
    return _section(f"Class distribution of the {r['split']} split", table, "distribution")
