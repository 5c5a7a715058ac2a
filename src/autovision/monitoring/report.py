"""The drift HTML report: the verdict, every test, reference vs recent histograms and the
verdict per day; self-contained (plots are inline PNGs, numbers beside them)."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from autovision.evaluation._plots import _data_uri
from autovision.monitoring.drift import Sample
from autovision.monitoring.reference import Reference

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#111}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
font-size:13px;text-align:right}th{background:#f3f4f6}td:first-child{text-align:left}
.drift{color:#b91c1c;font-weight:600}.no_drift{color:#15803d}.not_enough_data{color:#a16207}
.grid{display:flex;flex-wrap:wrap;gap:8px}img{max-width:340px}"""


def write_report(path: Path, result: dict[str, Any], reference: Reference, recent: Sample) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_report(result, reference, recent), encoding="utf-8")
    os.replace(tmp, path)


def render_report(result: dict[str, Any], reference: Reference, recent: Sample) -> str:
    e = html.escape
    verdict = result["verdict"]
    parts = [
        f"<!doctype html><meta charset=utf-8><title>Drift: {e(result['model'])}</title>",
        f"<style>{_CSS}</style><h1>Drift of {e(result['model'])}</h1>",
        f"<p>Verdict: <span class={verdict}>{verdict.replace('_', ' ')}</span> on "
        f"{result['samples']} recent predictions against {result['reference_samples']} "
        f"reference images ({e(reference.dataset)}, {e(reference.split)} split); alpha "
        f"{result['alpha']}, {e(result['correction'])}.</p>",
    ]
    parts += [f"<p>{e(n)}</p>" for n in result.get("notes", [])]
    parts.append(_tests_table(result["tests"]))
    parts.append("<h2>Verdict per day</h2>" + _daily(result.get("daily", [])))
    if len(recent):
        parts.append("<h2>Reference vs recent</h2><div class=grid>")
        parts.append(_labels_plot(reference, recent))
        parts.append(_hist("top-1 confidence", reference.sample.probs.max(1), recent.probs.max(1)))
        for name in sorted(set(reference.sample.stats) & set(recent.stats)):
            parts.append(_hist(name, reference.sample.stats[name], recent.stats[name]))
        parts.append("</div>")
    return "\n".join(parts)


def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3g}" if isinstance(x, float) else html.escape(str(x))


def _tests_table(tests: list[dict[str, Any]]) -> str:
    head = "<table><tr><th>test</th><th>method</th><th>statistic</th><th>p-value</th>"
    head += "<th>threshold</th><th>verdict</th></tr>"
    rows = [
        f"<tr><td>{html.escape(t['name'])}</td><td>{_fmt(t['method'])}</td>"
        f"<td>{_fmt(t['statistic'])}</td><td>{_fmt(t['p_value'])}</td>"
        f"<td>{_fmt(t['threshold'])}</td><td class={t['verdict']}>{t['verdict']}</td></tr>"
        for t in tests
    ]
    return head + "".join(rows) + "</table>"


def _daily(days: list[dict[str, Any]]) -> str:
    if not days:
        return "<p>No logged predictions in the window.</p>"
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 2.4), layout="constrained")
    ax = fig.add_subplot()
    colors = {"drift": "#dc2626", "no_drift": "#16a34a", "not_enough_data": "#d97706"}
    xs = range(len(days))
    ax.bar(xs, [d["samples"] for d in days], color=[colors[d["verdict"]] for d in days])
    ax.set_xticks(list(xs), [d["day"][5:] for d in days], fontsize=7, rotation=45)
    ax.set_ylabel("predictions")
    ax.set_title("red: drift, green: no drift, amber: not enough data", fontsize=9)
    rows = "".join(
        f"<tr><td>{html.escape(d['day'])}</td><td>{d['samples']}</td>"
        f"<td class={d['verdict']}>{d['verdict']}</td>"
        f"<td>{html.escape(', '.join(d['failing'][:6]))}</td></tr>"
        for d in days
    )
    table = "<table><tr><th>day</th><th>samples</th><th>verdict</th><th>failing</th></tr>"
    return f"<img src='{_data_uri(fig)}'>" + table + rows + "</table>"


def _hist(name: str, ref: np.ndarray, recent: np.ndarray) -> str:
    from matplotlib.figure import Figure

    ref, recent = ref[~np.isnan(ref)], recent[~np.isnan(recent)]
    fig = Figure(figsize=(3.4, 2.5), layout="constrained")
    ax = fig.add_subplot()
    both = np.concatenate([ref, recent]) if len(ref) + len(recent) else np.zeros(1)
    bins = np.linspace(float(both.min()), float(both.max()) + 1e-9, 25)
    ax.hist(ref, bins=bins, density=True, alpha=0.5, label="reference", color="#2563eb")
    ax.hist(recent, bins=bins, density=True, alpha=0.5, label="recent", color="#dc2626")
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return f"<img alt='{html.escape(name)}' src='{_data_uri(fig)}'>"


def _labels_plot(reference: Reference, recent: Sample) -> str:
    from matplotlib.figure import Figure

    k = len(reference.labels)
    ref = np.bincount(reference.sample.probs.argmax(1), minlength=k) / max(len(reference), 1)
    rec = np.bincount(recent.probs.argmax(1), minlength=k) / max(len(recent), 1)
    fig = Figure(figsize=(3.4, 2.5), layout="constrained")
    ax = fig.add_subplot()
    xs = np.arange(k)
    ax.bar(xs - 0.2, ref, 0.4, label="reference", color="#2563eb")
    ax.bar(xs + 0.2, rec, 0.4, label="recent", color="#dc2626")
    ax.set_xticks(xs, [str(lab)[:8] for lab in reference.labels], fontsize=7, rotation=45)
    ax.set_title("predicted labels (share)", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return f"<img alt='predicted labels' src='{_data_uri(fig)}'>"
