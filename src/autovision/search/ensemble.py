"""Greedy ensemble selection over the validation probabilities of the best trials.

Caruana et al., "Ensemble selection from libraries of models" (ICML 2004): start from the
best single model (sorted initialisation of one), then add, with replacement, the candidate
whose inclusion gives the best mix, for a fixed number of rounds; the best mix seen wins. A
mix is judged on the search's ranking measure (accuracy, or micro-F1 for multi-label) with
log loss breaking ties, and is kept only when it beats the best single model by a margin
(:data:`SCORE_MARGIN` on the measure, or :data:`LOSS_MARGIN` of log loss when the measure
ties): validation ranked the candidates too, so a mix must win clearly. Weights are the
integer counts of each member, normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autovision.search import metrics

SCORE_MARGIN = 0.005  # on the ranking measure
LOSS_MARGIN = 0.01  # nats of log loss, when the measure ties
ROUNDS = 20
TIE = 1e-9


def measure(task: str, y: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """``(ranking measure, log loss)`` of ``probs`` on targets ``y`` (multi-label: binary
    cross-entropy per label, averaged)."""
    score, _ = metrics.evaluate(task, y, probs)
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    if task == "multi-label":
        yb = y.astype(bool)
        loss = float(-np.where(yb, np.log(p), np.log1p(-p)).mean())
    else:
        loss = float(-np.log(p[np.arange(len(y)), y]).mean())
    return float(score), loss


def better(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether ``(score, loss)`` ``a`` beats ``b``: a higher score, or the same and a lower loss."""
    if a[0] > b[0] + TIE:
        return True
    return a[0] >= b[0] - TIE and a[1] < b[1] - 1e-12


def beats_by_margin(
    a: tuple[float, float],
    b: tuple[float, float],
    score_margin: float | None = None,
    loss_margin: float | None = None,
) -> bool:
    """Whether ``a`` beats ``b`` clearly: by ``score_margin`` on the measure, or, with the
    measure tied (or better by less), by ``loss_margin`` of log loss (defaults:
    :data:`SCORE_MARGIN`, :data:`LOSS_MARGIN`)."""
    score_margin = SCORE_MARGIN if score_margin is None else score_margin
    loss_margin = LOSS_MARGIN if loss_margin is None else loss_margin
    if a[0] >= b[0] + score_margin - TIE:
        return True
    return a[0] >= b[0] - TIE and a[1] <= b[1] - loss_margin


@dataclass
class Selection:
    """The chosen mix: ``members`` (candidate indices, highest weight first), their integer
    ``counts`` and normalised ``weights``; ``kept`` when it beats the best single model by
    the margin (else ``members`` is that single model)."""

    members: list[int]
    counts: list[int]
    weights: list[float]
    score: float
    loss: float
    single: int
    single_score: float
    single_loss: float
    kept: bool
    why: str
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "members": self.members,
            "counts": self.counts,
            "weights": [round(w, 6) for w in self.weights],
            "score": round(self.score, 6),
            "log_loss": round(self.loss, 6),
            "single_score": round(self.single_score, 6),
            "single_log_loss": round(self.single_loss, 6),
            "kept": self.kept,
            "why": self.why,
        }


def mix(
    probs: Sequence[np.ndarray], members: Sequence[int], weights: Sequence[float]
) -> np.ndarray:
    """The weighted average of ``probs[m]`` over ``members``."""
    out = np.zeros_like(probs[members[0]], dtype=np.float64)
    for m, w in zip(members, weights, strict=True):
        out += w * probs[m].astype(np.float64)
    return out.astype(np.float32)


def select(
    task: str,
    y: np.ndarray,
    probs: Sequence[np.ndarray],
    *,
    rounds: int = ROUNDS,
    score_margin: float | None = None,
    loss_margin: float | None = None,
) -> Selection:
    """Greedy ensemble selection with replacement over candidates ``probs`` (each [N, L] on
    the images of ``y``); margins as :func:`beats_by_margin`."""
    score_margin = SCORE_MARGIN if score_margin is None else score_margin
    loss_margin = LOSS_MARGIN if loss_margin is None else loss_margin
    if not probs:
        raise ValueError("ensemble selection needs at least one candidate")
    singles = [measure(task, y, p) for p in probs]
    first = 0
    for i, s in enumerate(singles):
        if better(s, singles[first]):
            first = i
    counts = np.zeros(len(probs), dtype=np.int64)
    counts[first] = 1
    total = probs[first].astype(np.float64)
    best_counts, best = counts.copy(), singles[first]
    trace = [{"add": first, "score": best[0], "log_loss": best[1]}]
    for _ in range(rounds - 1 if len(probs) > 1 else 0):
        n = counts.sum() + 1
        pick, pick_m = -1, (-np.inf, np.inf)
        for i, p in enumerate(probs):
            m = measure(task, y, ((total + p) / n).astype(np.float32))
            if pick < 0 or better(m, pick_m):
                pick, pick_m = i, m
        counts[pick] += 1
        total = total + probs[pick]
        trace.append({"add": pick, "score": pick_m[0], "log_loss": pick_m[1]})
        if better(pick_m, best):
            best_counts, best = counts.copy(), pick_m
    order = sorted(np.flatnonzero(best_counts), key=lambda i: (-best_counts[i], i))
    single = singles[first]
    kept = len(order) > 1 and beats_by_margin(best, single, score_margin, loss_margin)
    if len(order) == 1:
        why = "no mix beat the best single model"
    elif kept:
        why = (
            f"the mix of {len(order)} scores {best[0]:.4f} (log loss {best[1]:.4f}) against "
            f"{single[0]:.4f} ({single[1]:.4f}) for the best single model"
        )
    else:
        why = (
            f"the best mix ({best[0]:.4f}, log loss {best[1]:.4f}) does not beat the best "
            f"single model ({single[0]:.4f}, {single[1]:.4f}) by the margin "
            f"({score_margin} on the measure or {loss_margin} of log loss)"
        )
    if not kept:
        order, best = [first], single
    chosen = [int(best_counts[i]) if kept else 1 for i in order]
    return Selection(
        members=[int(i) for i in order],
        counts=chosen,
        weights=[c / sum(chosen) for c in chosen],
        score=best[0],
        loss=best[1],
        single=first,
        single_score=single[0],
        single_loss=single[1],
        kept=kept,
        why=why,
        rounds=trace,
    )
