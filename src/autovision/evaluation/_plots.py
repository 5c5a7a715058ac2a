"""Plots of the evaluation report, drawn with matplotlib (Agg) into inline PNG data URIs."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_CURVES = 10  # per-label curves drawn; the micro average is always drawn
COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777",
          "#65a30d", "#ea580c", "#4f46e5"]  # fmt: skip


def _figure(width: float = 5.2, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _data_uri(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _style(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.02)
    ax.grid(True, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _legend(ax: Any, loc: str) -> None:
    """A legend, or a note when no curve is defined (no positives in the split)."""
    if any(line.get_label() != "chance" for line in ax.get_lines()):
        ax.legend(fontsize=7.5, loc=loc, frameon=False)
    else:
        ax.text(0.5, 0.5, "undefined for this split", ha="center", color="#6b7280")


def _curve_labels(Y: np.ndarray, labels: Sequence[str], need_negatives: bool) -> list[int]:
    pos = Y.sum(axis=0)
    ok = [j for j in range(len(labels)) if pos[j] > 0 and (not need_negatives or pos[j] < len(Y))]
    return sorted(ok, key=lambda j: -pos[j])[:MAX_CURVES]


def roc_plot(Y: np.ndarray, P: np.ndarray, labels: Sequence[str], result: dict) -> str:
    """One-vs-rest ROC curve per label (largest labels first) and the micro average."""
    from sklearn.metrics import roc_curve

    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], color="#9ca3af", lw=1, ls="--", label="chance")
    for n, j in enumerate(_curve_labels(Y, labels, need_negatives=True)):
        fpr, tpr, _ = roc_curve(Y[:, j], P[:, j])
        auc = result["roc_auc"]["per_label"][labels[j]]
        ax.plot(fpr, tpr, color=COLORS[n % len(COLORS)], lw=1.4, label=f"{labels[j]} ({auc:.3f})")
    if result["roc_auc"]["micro"] is not None:
        fpr, tpr, _ = roc_curve(Y.ravel(), P.ravel())
        micro = result["roc_auc"]["micro"]
        ax.plot(fpr, tpr, color="#111827", lw=2.2, label=f"micro average ({micro:.3f})")
    _style(ax, "ROC curves (one-vs-rest, AUC)", "False positive rate", "True positive rate")
    _legend(ax, "lower right")
    return _data_uri(fig)


def pr_plot(Y: np.ndarray, P: np.ndarray, labels: Sequence[str], result: dict) -> str:
    """Precision-recall curve per label and the micro average, with average precision."""
    from sklearn.metrics import precision_recall_curve

    fig, ax = _figure()
    for n, j in enumerate(_curve_labels(Y, labels, need_negatives=False)):
        prec, rec, _ = precision_recall_curve(Y[:, j], P[:, j])
        ap = result["average_precision"]["per_label"][labels[j]]
        ax.step(rec, prec, where="post", color=COLORS[n % len(COLORS)], lw=1.4,
                label=f"{labels[j]} ({ap:.3f})")  # fmt: skip
    if result["average_precision"]["micro"] is not None:
        prec, rec, _ = precision_recall_curve(Y.ravel(), P.ravel())
        micro = result["average_precision"]["micro"]
        ax.step(rec, prec, where="post", color="#111827", lw=2.2,
                label=f"micro average ({micro:.3f})")  # fmt: skip
    _style(ax, "Precision-recall curves (average precision)", "Recall", "Precision")
    _legend(ax, "lower left")
    return _data_uri(fig)


def threshold_plot(rows: Sequence[dict[str, Any]]) -> str:
    """Precision, recall, F1 and coverage against the confidence threshold."""
    fig, ax = _figure(6.4, 4.0)
    t = [r["threshold"] for r in rows]
    for key, color, ls in (
        ("precision", "#2563eb", "-"),
        ("recall", "#dc2626", "-"),
        ("f1", "#16a34a", "-"),
        ("coverage", "#6b7280", "--"),
    ):
        values = [np.nan if r[key] is None else r[key] for r in rows]
        ax.plot(t, values, color=color, ls=ls, lw=1.8, marker="o", ms=2.5, label=key)
    _style(ax, "Precision and recall vs confidence threshold", "Confidence threshold", "Value")
    ax.legend(fontsize=8, loc="lower left", frameon=False)
    return _data_uri(fig)


def calibration_plot(cal: dict[str, Any]) -> str:
    """Reliability diagram (accuracy per confidence bin) above a histogram of the counts."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 5.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    bins = cal["bins"]
    width = bins[0]["upper"] - bins[0]["lower"]
    centers = [(b["lower"] + b["upper"]) / 2 for b in bins]
    top.plot([0, 1], [0, 1], color="#9ca3af", lw=1, ls="--", label="perfect calibration")
    acc = [b["accuracy"] if b["accuracy"] is not None else 0.0 for b in bins]
    top.bar(centers, acc, width=width * 0.92, color="#2563eb", alpha=0.8, label="accuracy")
    conf = [(c, b["confidence"]) for c, b in zip(centers, bins, strict=True) if b["count"]]
    if conf:
        top.plot(*zip(*conf, strict=True), "o", color="#dc2626", ms=4, label="mean confidence")
    _style(top, f"Calibration (ECE {cal['ece']:.3f})", "", "Accuracy")
    top.legend(fontsize=8, loc="upper left", frameon=False)
    bottom.bar(centers, [b["count"] for b in bins], width=width * 0.92, color="#6b7280")
    bottom.set_xlabel("Confidence")
    bottom.set_ylabel("Images" if cal.get("kind") == "top confidence" else "Pairs")
    bottom.grid(True, alpha=0.3)
    for side in ("top", "right"):
        bottom.spines[side].set_visible(False)
    return _data_uri(fig)
