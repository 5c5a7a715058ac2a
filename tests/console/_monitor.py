"""Helpers of the Monitor and Label page tests: a named model with logged predictions
(rows written directly, images stored as blobs) and a stored drift check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

LABELS = ("cat", "dog", "fox")


def pets_model(ws, tmp_path, *, name="pets", dataset="pets", labels=LABELS, model_id="m-pets-1"):
    path = tmp_path / model_id
    path.mkdir()
    (path / "model.json").write_text(
        json.dumps({"labels": list(labels), "task": "single-label", "thresholds": None})
    )
    return ws.register_model(
        model_id, dataset=dataset, dataset_version=1, task="single-label", path=path, name=name
    )


def log_predictions(
    ws, image_bytes, probs_list, *, name="pets", model_id="m-pets-1", labels=LABELS, hours_ago=1.0
):
    """One logged prediction per probability tuple; returns their ids in order."""
    from autovision.workspace.db import PredictionLogRow

    t0 = datetime.now(UTC) - timedelta(hours=hours_ago)
    ids = []
    with ws.Session.begin() as s:
        start = s.query(PredictionLogRow).count()
        for k, probs in enumerate(probs_list):
            n = start + k + 1
            top = sorted(range(len(probs)), key=lambda i: -probs[i])
            sha = ws.blobs.put(image_bytes(top[0], 24, 4000 + n))
            pid = f"p-{n:04x}"
            s.add(
                PredictionLogRow(
                    id=pid,
                    time=t0 + timedelta(seconds=n),
                    request_id=f"r-{n}",
                    name=name,
                    model_id=model_id,
                    version=1,
                    route="/v1/models/pets:predict",
                    instance=0,
                    probs=list(probs),
                    labels=[labels[top[0]]],
                    top_label=labels[top[0]],
                    confidence=probs[top[0]],
                    margin=probs[top[0]] - probs[top[1]],
                    width=24,
                    height=24,
                    image_sha256=sha,
                )
            )
            ids.append(pid)
    return ids


def stored_check(ws, model_id="m-pets-1", verdict="drift"):
    from autovision.monitoring.history import save_check

    result = {
        "model": "pets@1",
        "model_id": model_id,
        "verdict": verdict,
        "samples": 60,
        "reference_samples": 40,
        "alpha": 0.05,
        "correction": "weighted Bonferroni",
        "tests": [
            {
                "name": "confidence",
                "method": "ks",
                "statistic": 0.4,
                "p_value": 0.001,
                "threshold": 0.01,
                "verdict": "drift",
            },
            {
                "name": "label",
                "method": "chi2",
                "statistic": 1.0,
                "p_value": 0.5,
                "threshold": 0.01,
                "verdict": "no_drift",
            },
        ],
        "notes": [],
        "reference": {"dataset": "pets@1", "split": "test"},
    }
    plots = {
        "labels": {"names": list(LABELS), "reference": [0.3, 0.3, 0.4], "recent": [0.6, 0.2, 0.2]},
        "histograms": {
            "confidence": {
                "edges": [i / 4 for i in range(5)],
                "reference": [0.1, 0.2, 0.3, 0.4],
                "recent": [0.4, 0.3, 0.2, 0.1],
            },
        },
    }
    return save_check(ws, result, plots)
