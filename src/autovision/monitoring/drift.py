"""Drift detection: recent predictions against the model's own test split (the reference).

The tests, grouped into families (each with statistic, p-value, threshold, verdict):

- ``label``: predicted-label counts, chi-square test of homogeneity (reference vs recent);
- ``softmax:<class>``: each class's probability, two-sample Kolmogorov-Smirnov ("black-box
  shift detection", the best detector of Rabanser et al., *Failing Loudly*, 2019);
- ``confidence``: the top-1 probability, KS;
- ``embedding``: the pooled features, maximum mean discrepancy with an RBF kernel (median
  heuristic) and a permutation test. MMD rather than a domain classifier's AUC: it needs no
  training or held-out split of a few hundred samples, is exact under permutation, and one
  kernel matrix serves every permutation (under a second for 500 + 500 samples);
- ``input:<stat>``: each input statistic of :func:`autovision.data.quality.analyze`, KS.

Correction (weighted Bonferroni): alpha is split equally among the G families that ran, and a
family's share equally among its k tests, so a test rejects when ``p <= alpha / (G * k)``.
The thresholds sum to alpha, so the chance of any false alarm stays at or under alpha.
With fewer than :data:`MIN_SAMPLES` recent (or reference) samples the verdict is
``not_enough_data``, never a silent ``no_drift``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autovision.checks.outliers import knn_distances

MIN_SAMPLES = 30
"""Fewest recent samples any test runs on: below it KS and chi-square have almost no power
(with 10 classes, 30 images expect 3 per class) and the verdict is ``not_enough_data``."""
MMD_MAX_SAMPLES = 500
"""Each side is subsampled to this many embeddings for MMD (the kernel matrix is O(n^2))."""
MMD_PERMUTATIONS = 200
"""Permutations of the MMD test: its smallest p-value, 1/201, is under the embedding family's
threshold (alpha / 5 = 0.01 with all five families)."""
FAMILIES = ("label", "softmax", "confidence", "embedding", "input")


@dataclass
class Sample:
    """Predictions of a set of images: probabilities [N, L], embeddings [N, D] or None, and
    input statistics ``{name: [N]}`` (NaN where an image lacks one)."""

    probs: np.ndarray
    embeddings: np.ndarray | None = None
    stats: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.probs = np.asarray(self.probs, dtype=np.float64).reshape(len(self.probs), -1)
        if self.embeddings is not None:
            self.embeddings = np.asarray(self.embeddings, dtype=np.float64)
            if len(self.embeddings) != len(self.probs):
                raise ValueError("embeddings and probabilities differ in length")
        self.stats = {k: np.asarray(v, dtype=np.float64) for k, v in self.stats.items()}

    def __len__(self) -> int:
        return len(self.probs)

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> Sample:
        """From prediction-log records (``probs``, ``embedding``, ``stats``); embeddings only
        when every record has one, statistics by name with NaN where absent."""
        n_labels = len(records[0]["probs"]) if records else 0
        probs = np.array([r["probs"] for r in records], dtype=np.float64).reshape(-1, n_labels)
        embs = [r.get("embedding") for r in records]
        emb = np.array(embs, dtype=np.float64) if records and all(e for e in embs) else None
        return cls(probs, emb, stats_matrix([r.get("stats") or {} for r in records]))

    def subset(self, index: np.ndarray) -> Sample:
        emb = None if self.embeddings is None else self.embeddings[index]
        return Sample(self.probs[index], emb, {k: v[index] for k, v in self.stats.items()})


def stats_matrix(rows: Sequence[Mapping[str, float]]) -> dict[str, np.ndarray]:
    """``[{stat: value}]`` -> ``{stat: array}``, NaN where a row lacks the stat."""
    names = sorted({k for r in rows for k in r})
    return {k: np.array([r.get(k, np.nan) for r in rows], dtype=np.float64) for k in names}


@dataclass
class DriftResult:
    """The verdict (``drift`` / ``no_drift`` / ``not_enough_data``) and every test."""

    verdict: str
    samples: int
    reference_samples: int
    alpha: float
    tests: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool | None:
        return None if self.verdict == "not_enough_data" else self.verdict == "drift"

    def to_dict(self) -> dict[str, Any]:
        return {
            "drift": self.drift,
            "verdict": self.verdict,
            "samples": self.samples,
            "reference_samples": self.reference_samples,
            "alpha": self.alpha,
            "min_samples": MIN_SAMPLES,
            "correction": "weighted Bonferroni: alpha / families, then / tests in the family",
            "tests": self.tests,
            "notes": self.notes,
        }


def detect(
    reference: Sample | Any,
    recent: Sample,
    *,
    alpha: float = 0.05,
    labels: Sequence[str] | None = None,
    seed: int = 0,
) -> DriftResult:
    """Compare ``recent`` with ``reference`` (a :class:`Sample` or a ``Reference``)."""
    ref = reference.sample if hasattr(reference, "sample") else reference
    labels = list(labels or getattr(reference, "labels", None) or range(ref.probs.shape[1]))
    if ref.probs.shape[1] != recent.probs.shape[1] and len(recent):
        raise ValueError(
            f"reference has {ref.probs.shape[1]} classes, recent predictions "
            f"{recent.probs.shape[1]}: not the same model"
        )
    groups: dict[str, list[dict[str, Any]]] = {}
    notes: list[str] = []
    n, m = len(recent), len(ref)
    if n < MIN_SAMPLES or m < MIN_SAMPLES:
        who = "recent predictions" if n < MIN_SAMPLES else "reference images"
        notes.append(f"{min(n, m)} {who}: every test needs at least {MIN_SAMPLES}")
        return DriftResult("not_enough_data", n, m, alpha, _skipped(ref, recent, labels), notes)

    groups["label"] = [_label_test(ref.probs, recent.probs, labels)]
    groups["softmax"] = [
        _ks(f"softmax:{lab}", ref.probs[:, j], recent.probs[:, j]) for j, lab in enumerate(labels)
    ]
    groups["confidence"] = [_ks("confidence", ref.probs.max(1), recent.probs.max(1))]
    if ref.embeddings is not None and recent.embeddings is not None:
        groups["embedding"] = [_mmd_test(ref.embeddings, recent.embeddings, seed=seed)]
    else:
        notes.append("no embeddings on one side (an older package or log): MMD test skipped")
    stat_tests = []
    for name in sorted(set(ref.stats) & set(recent.stats)):
        a, b = ref.stats[name], recent.stats[name]
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
        if len(a) >= MIN_SAMPLES and len(b) >= MIN_SAMPLES:
            stat_tests.append(_ks(f"input:{name}", a, b))
    if stat_tests:
        groups["input"] = stat_tests
    else:
        notes.append("no input statistics on one side: input tests skipped")

    tests: list[dict[str, Any]] = []
    for family, members in groups.items():
        threshold = alpha / (len(groups) * len(members))
        for t in members:
            t["family"] = family
            t["threshold"] = threshold
            t["verdict"] = "drift" if t["p_value"] <= threshold else "no_drift"
            tests.append(t)
    verdict = "drift" if any(t["verdict"] == "drift" for t in tests) else "no_drift"
    return DriftResult(verdict, n, m, alpha, tests, notes)


def _skipped(ref: Sample, recent: Sample, labels: Sequence[str]) -> list[dict[str, Any]]:
    names = ["label", *(f"softmax:{lab}" for lab in labels), "confidence"]
    if ref.embeddings is not None:
        names.append("embedding")
    names += [f"input:{k}" for k in sorted(ref.stats)]
    return [
        {
            "name": name,
            "family": name.split(":")[0],
            "method": None,
            "statistic": None,
            "p_value": None,
            "threshold": None,
            "verdict": "not_enough_data",
        }
        for name in names
    ]


def _ks(name: str, a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    from scipy.stats import ks_2samp

    res = ks_2samp(a, b)
    return {
        "name": name,
        "method": "ks",
        "statistic": float(res.statistic),
        "p_value": float(res.pvalue),
        "reference_mean": float(np.mean(a)),
        "recent_mean": float(np.mean(b)),
    }


def _label_test(ref_probs: np.ndarray, recent_probs: np.ndarray, labels: Sequence[str]):
    """Chi-square test of homogeneity on the 2 x L table of predicted-label counts (classes
    predicted on neither side dropped): the reference's own sampling noise is accounted for."""
    from scipy.stats import chi2_contingency

    k = ref_probs.shape[1]
    ref_counts = np.bincount(ref_probs.argmax(1), minlength=k)
    recent_counts = np.bincount(recent_probs.argmax(1), minlength=k)
    table = np.vstack([ref_counts, recent_counts])
    table = table[:, table.sum(0) > 0]
    if table.shape[1] < 2:
        stat, p = 0.0, 1.0
    else:
        res = chi2_contingency(table, correction=False)
        stat, p = float(res.statistic), float(res.pvalue)
    return {
        "name": "label",
        "method": "chi2",
        "statistic": stat,
        "p_value": p,
        "reference_share": _shares(ref_counts, labels),
        "recent_share": _shares(recent_counts, labels),
    }


def _shares(counts: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    total = max(int(counts.sum()), 1)
    return {str(lab): round(int(c) / total, 4) for lab, c in zip(labels, counts, strict=True)}


def _mmd_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    permutations: int = MMD_PERMUTATIONS,
    max_samples: int = MMD_MAX_SAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    stat, p, sigma = mmd_permutation_test(
        x, y, permutations=permutations, max_samples=max_samples, seed=seed
    )
    return {
        "name": "embedding",
        "method": "mmd-rbf-permutation",
        "statistic": stat,
        "p_value": p,
        "bandwidth": sigma,
        "permutations": permutations,
    }


def mmd_permutation_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    permutations: int = MMD_PERMUTATIONS,
    max_samples: int = MMD_MAX_SAMPLES,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(MMD^2, p-value, bandwidth)``: biased MMD^2 with an RBF kernel whose bandwidth is the
    median pairwise distance of the pooled sample; p = (1 + #perm >= observed) / (1 + B)."""
    rng = np.random.default_rng(seed)
    if len(x) > max_samples:
        x = x[rng.choice(len(x), max_samples, replace=False)]
    if len(y) > max_samples:
        y = y[rng.choice(len(y), max_samples, replace=False)]
    z = np.vstack([x, y]).astype(np.float64)
    sq = np.einsum("ij,ij->i", z, z)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    iu = np.triu_indices(len(z), 1)
    med = float(np.median(d2[iu])) if len(iu[0]) else 0.0
    sigma2 = med if med > 1e-12 else 1.0
    kernel = np.exp(-d2 / sigma2)
    n = len(x)
    total = len(z)

    def stat(mask: np.ndarray) -> float:
        a = mask.astype(np.float64) / n
        b = (~mask).astype(np.float64) / (total - n)
        w = a - b
        return float(w @ kernel @ w)

    base = np.zeros(total, dtype=bool)
    base[:n] = True
    observed = stat(base)
    exceed = 0
    for _ in range(permutations):
        if stat(rng.permutation(base)) >= observed:
            exceed += 1
    return observed, (1 + exceed) / (1 + permutations), float(np.sqrt(sigma2))


# ---- outliers: single records far from everything the model was tested on ------------------

OUTLIER_K = 5
"""Neighbours in the reference whose mean cosine distance scores a record."""
OUTLIER_QUANTILE = 0.99
"""A record is an outlier when its score passes this quantile of the reference's own
leave-one-out scores (about 1% of in-distribution images are flagged by chance)."""


def knn_scores(reference: np.ndarray, points: np.ndarray, *, k: int = OUTLIER_K) -> np.ndarray:
    """Mean cosine distance of each of ``points`` to its ``k`` nearest reference embeddings
    (blockwise, shared with the dataset check :mod:`autovision.checks.outliers`)."""
    return knn_distances(reference, points, k=k)


def outlier_threshold(reference: np.ndarray, *, k: int = OUTLIER_K) -> float:
    """The ``OUTLIER_QUANTILE`` of the reference's leave-one-out k-NN scores."""
    return float(np.quantile(knn_distances(reference, k=k), OUTLIER_QUANTILE))


def find_outliers(
    reference: Sample, records: Sequence[dict[str, Any]], *, k: int = OUTLIER_K
) -> dict[str, Any]:
    """Records whose embedding is far from the reference's (k-NN cosine distance over the
    reference's own 99th percentile): ``{"threshold", "checked", "ids", "scores"}``, worst
    first; nothing is checked without embeddings on both sides or under 10 reference images."""
    with_emb = [r for r in records if r.get("embedding") is not None and r.get("id")]
    if reference.embeddings is None or len(reference.embeddings) < 10 or not with_emb:
        return {"threshold": None, "checked": 0, "ids": [], "scores": []}
    width = reference.embeddings.shape[1]
    with_emb = [r for r in with_emb if len(r["embedding"]) == width]
    if not with_emb:
        return {"threshold": None, "checked": 0, "ids": [], "scores": []}
    threshold = outlier_threshold(reference.embeddings, k=k)
    scores = knn_scores(reference.embeddings, np.array([r["embedding"] for r in with_emb]), k=k)
    order = np.argsort(-scores, kind="stable")
    flagged = [int(i) for i in order if scores[i] > threshold]
    return {
        "threshold": round(threshold, 6),
        "checked": len(with_emb),
        "ids": [with_emb[i]["id"] for i in flagged],
        "scores": [round(float(scores[i]), 6) for i in flagged],
    }
