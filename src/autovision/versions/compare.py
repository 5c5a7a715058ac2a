"""Two model versions side by side: from the shadow record of a live server
(``autovision serve --shadow``), or both measured on one test split.

``compare(ws, "NAME@production", "NAME@challenger")`` reads the ``shadow_records`` where one
was the champion and the other the challenger (either way round) and gives the agreement
rate, agreement per label of A, the disagreements by (A's label, B's label) with example
request ids, and a histogram of each one's top-1 confidence. ``compare_on_split`` runs both
on the test split of the newer one's dataset version, so both are measured on one split.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from autovision.errors import AutovisionError, ModelError

BINS = 10  # top-1 confidence histogram: [0, 0.1), [0.1, 0.2), ... [0.9, 1.0]
EXAMPLES = 5  # request ids kept per disagreement pair
NONE_LABEL = "(none)"  # a multi-label prediction with no label over its threshold


def label_key(labels: Iterable[str]) -> str:
    """One key for a prediction's labels: the label, or sorted labels joined by ``+``."""
    labels = sorted(labels)
    return "+".join(labels) if labels else NONE_LABEL


def confidence_bin(probs: Sequence[float]) -> int:
    """The histogram bin of a prediction's top-1 confidence (1.0 goes in the last bin)."""
    top = max(probs) if len(probs) else 0.0
    return min(BINS - 1, max(0, int(top * BINS)))


def compare_records(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Statistics of records ``{"request_id", "a_labels", "b_labels", "a_probs",
    "b_probs"}`` (A and B oriented already): what :func:`compare` returns besides the
    models."""
    n = agree = 0
    per_label: dict[str, list[int]] = {}  # A's label -> [n, agreed]
    pairs: Counter[tuple[str, str]] = Counter()
    examples: dict[tuple[str, str], list[str]] = {}
    hist_a, hist_b = [0] * BINS, [0] * BINS
    requests: set[str] = set()
    for r in records:
        a, b = label_key(r["a_labels"]), label_key(r["b_labels"])
        n += 1
        requests.add(r.get("request_id") or "")
        same = a == b
        agree += same
        counts = per_label.setdefault(a, [0, 0])
        counts[0] += 1
        counts[1] += same
        if not same:
            pairs[(a, b)] += 1
            seen = examples.setdefault((a, b), [])
            rid = r.get("request_id") or ""
            if rid and rid not in seen and len(seen) < EXAMPLES:
                seen.append(rid)
        hist_a[confidence_bin(r["a_probs"])] += 1
        hist_b[confidence_bin(r["b_probs"])] += 1
    return {
        "n": n,
        "requests": len(requests),
        "agreement": agree / n if n else None,
        "agreed": agree,
        "per_label": {
            label: {"n": c[0], "agreed": c[1], "agreement": c[1] / c[0]}
            for label, c in sorted(per_label.items())
        },
        "disagreements": [
            {"a": a, "b": b, "count": count, "examples": examples.get((a, b), [])}
            for (a, b), count in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "confidence": {
            "bins": [round(i / BINS, 2) for i in range(BINS + 1)],
            "a": hist_a,
            "b": hist_b,
        },
    }


def parse_since(since: str | float | timedelta | datetime | None) -> datetime | None:
    """``24h``, ``30m``, ``7d``, seconds, a timedelta (ago) or a datetime -> a UTC time."""
    if since is None or isinstance(since, datetime):
        return since.astimezone(UTC) if isinstance(since, datetime) else None
    if isinstance(since, timedelta):
        return datetime.now(UTC) - since
    from autovision.search.budget import parse_duration

    try:
        seconds = parse_duration(since)
    except AutovisionError:
        raise ModelError(
            f"invalid --since {since!r}: expected a duration like 30m, 24h or 7d"
        ) from None
    return datetime.now(UTC) - timedelta(seconds=seconds)


def _model(ws: Any, ref: str) -> dict[str, Any]:
    info = ws.model(ref)
    return {
        "ref": ref,
        "id": info["model"],
        "name": info.get("name") or info.get("dataset"),
        "version": info.get("version"),
        "dataset": f"{info.get('dataset')}@{info.get('dataset_version')}",
        "created_at": info.get("created_at"),
    }


def shadow_records(
    ws: Any, a_id: str, b_id: str, *, since: datetime | None = None
) -> list[dict[str, Any]]:
    """The records of ``a_id`` and ``b_id`` (either one the champion), oldest first,
    oriented as A and B."""
    from sqlalchemy import and_, or_, select

    from autovision.workspace.db import ShadowRecordRow as R

    q = select(R).where(
        or_(
            and_(R.champion_id == a_id, R.challenger_id == b_id),
            and_(R.champion_id == b_id, R.challenger_id == a_id),
        )
    )
    if since is not None:
        q = q.where(R.time >= since)
    out = []
    with ws.Session() as s:
        for r in s.scalars(q.order_by(R.time, R.id)):
            a_first = r.champion_id == a_id
            out.append(
                {
                    "time": r.time.isoformat(),
                    "request_id": r.request_id,
                    "instance": r.instance,
                    "a_champion": a_first,
                    "a_labels": r.champion_labels if a_first else r.challenger_labels,
                    "b_labels": r.challenger_labels if a_first else r.champion_labels,
                    "a_probs": r.champion_probs if a_first else r.challenger_probs,
                    "b_probs": r.challenger_probs if a_first else r.champion_probs,
                }
            )
    return out


def compare(
    ws: Any, ref_a: str, ref_b: str, *, since: str | float | timedelta | datetime | None = None
) -> dict[str, Any]:
    """A and B (any model ref) from the shadow record: agreement, per-label agreement,
    disagreements with example request ids, confidence histograms."""
    a, b = _model(ws, ref_a), _model(ws, ref_b)
    start = parse_since(since)
    records = shadow_records(ws, a["id"], b["id"], since=start)
    out = {
        "a": a,
        "b": b,
        "since": start.isoformat() if start else None,
        "a_champion_images": sum(r["a_champion"] for r in records),
        **compare_records(records),
    }
    if not records:
        out["notes"] = [
            f"no shadow records of {ref_a} and {ref_b}"
            + (f" since {out['since']}" if start else "")
            + f": serve one with `autovision serve {ref_a} --shadow {ref_b}`"
        ]
    return out


HEADLINE = ("accuracy", "macro_f1", "log_loss", "ece", "top_k_accuracy")


def compare_on_split(ws: Any, ref_a: str, ref_b: str, split: str = "test") -> dict[str, Any]:
    """Both versions' metrics on ``split`` of the newer one's dataset version."""
    from autovision.evaluation.api import evaluate_predictions, summary
    from autovision.evaluation.predictions import predict_split

    a, b = _model(ws, ref_a), _model(ws, ref_b)
    newer = max((a, b), key=lambda m: (m["created_at"] or "", m["version"] or 0))
    dataset = newer["dataset"]
    metrics = {}
    for side, m in (("a", a), ("b", b)):
        preds = predict_split(ws, m["id"], split=split, dataset=dataset)
        metrics[side] = summary(evaluate_predictions(preds))
        metrics[side].pop("metrics_path", None)
    diff = {
        k: metrics["b"][k] - metrics["a"][k]
        for k in HEADLINE
        if isinstance(metrics["a"].get(k), int | float)
        and isinstance(metrics["b"].get(k), int | float)
    }
    return {
        "a": {**a, "metrics": metrics["a"]},
        "b": {**b, "metrics": metrics["b"]},
        "dataset": dataset,
        "split": split,
        "difference": diff,
    }
