"""Drift's outlier flag: single records far from the reference enter the review queue."""

from __future__ import annotations

import numpy as np

from autovision.monitoring.drift import Sample, find_outliers, knn_scores, outlier_threshold


def _cloud(rng: np.random.Generator, n: int, centre: np.ndarray) -> np.ndarray:
    return centre + 0.05 * rng.standard_normal((n, centre.size))


def test_a_far_record_is_flagged_and_near_ones_are_not():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3] * 3
    ref = np.vstack([_cloud(rng, 60, c) for c in centres])
    reference = Sample(probs=np.full((len(ref), 3), 1 / 3), embeddings=ref)
    near = [
        {"id": f"p-{i}", "embedding": e.tolist()}
        for i, e in enumerate(_cloud(rng, 300, centres[1]))
    ]
    far = {"id": "p-far", "embedding": (np.eye(8)[7] * 3).tolist()}
    found = find_outliers(reference, [*near, far])
    assert found["checked"] == 301
    assert found["ids"][0] == "p-far"
    # the reference's 99th percentile lets about 1% of in-distribution records through
    assert len(found["ids"]) - 1 <= 15
    assert found["scores"][0] > found["threshold"]


def test_threshold_is_the_reference_own_quantile():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((200, 16))
    t = outlier_threshold(ref)
    own = knn_scores(ref, ref[:50], k=6)  # self plus 5: close to the leave-one-out scores
    assert 0 < t < 2 and own.mean() < t


def test_nothing_checked_without_embeddings():
    reference = Sample(probs=np.full((20, 2), 0.5), embeddings=None)
    assert find_outliers(reference, [{"id": "p-1", "embedding": [1.0, 0.0]}])["checked"] == 0


def test_monitor_queues_the_outliers(workspace, review_model):
    """flag_outliers marks far records "queued" in the log (the review queue reads them)."""
    from datetime import UTC, datetime

    from autovision.monitoring.monitor import flag_outliers
    from autovision.monitoring.reference import Reference
    from autovision.workspace.db import PredictionLogRow

    rng = np.random.default_rng(2)
    ref_emb = _cloud(rng, 50, np.eye(4)[0] * 2)
    reference = Reference(
        model_id=review_model,
        labels=["cat", "dog", "fox"],
        dataset="pets",
        split="test",
        sample=Sample(probs=np.full((50, 3), 1 / 3), embeddings=ref_emb),
        created_at=datetime.now(UTC).isoformat(),
    )
    rows = [("p-near", ref_emb[0] + 0.01), ("p-far", np.eye(4)[3] * 2)]
    with workspace.Session.begin() as s:
        for pid, emb in rows:
            s.add(
                PredictionLogRow(
                    id=pid,
                    time=datetime.now(UTC),
                    request_id=pid,
                    name="pets",
                    model_id=review_model,
                    version=1,
                    route="predict",
                    instance=0,
                    probs=[0.9, 0.05, 0.05],
                    labels=["cat"],
                    top_label="cat",
                    confidence=0.9,
                    margin=0.85,
                    width=8,
                    height=8,
                    embedding=emb.tolist(),
                )
            )
    records = [{"id": pid, "embedding": emb.tolist()} for pid, emb in rows]
    out = flag_outliers(workspace, reference, records)
    assert out["flagged"] == 1 and out["queued"] == 1 and out["ids"] == ["p-far"]
    with workspace.Session() as s:
        assert s.get(PredictionLogRow, "p-far").review_status == "queued"
        assert s.get(PredictionLogRow, "p-near").review_status is None
    assert flag_outliers(workspace, reference, records)["queued"] == 0  # once only
