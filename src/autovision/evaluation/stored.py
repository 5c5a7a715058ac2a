"""An evaluation made once per model version and dataset content, kept with its per-image
probabilities: what the console's model page reads (figures, confusion-matrix cells, the
threshold slider) without predicting again.

``stored_evaluation(ws, "pets@2")`` runs :func:`~autovision.evaluation.predictions.
predict_split` and :func:`~autovision.evaluation.api.evaluate_predictions` (the figures of
``autovision evaluate`` and its HTML report) the first time, then reads
``cache/evaluations/<model id>/<split>-<dataset content hash>.json``. A model package and a
dataset version never change, so the file never goes stale; it is encrypted like the blobs
when the workspace has a key. Nothing in the model's own record is changed: that is
``autovision evaluate``'s job.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from autovision.errors import ModelError

__all__ = [
    "cell_ids",
    "compare_versions",
    "item_sources",
    "matrices",
    "slider_data",
    "stored_evaluation",
]

FORMAT = 1
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_memo: dict[str, dict[str, Any]] = {}
_MEMO_SIZE = 16


def _dataset_hash(ws: Any, ref: str) -> tuple[str, str]:
    """(``NAME@N``, content hash) of a dataset reference, from the versions table."""
    from sqlalchemy import select

    from autovision.data.dataset import parse_ref
    from autovision.workspace.db import DatasetRow, VersionRow

    name, version = parse_ref(ref)
    with ws.Session() as s:
        q = (
            select(VersionRow.version, VersionRow.content_hash)
            .join(DatasetRow, DatasetRow.id == VersionRow.dataset_id)
            .where(DatasetRow.name == name)
        )
        q = (
            q.order_by(VersionRow.version.desc()).limit(1)
            if version is None
            else q.where(VersionRow.version == version)
        )
        row = s.execute(q).first()
    if row is None:
        ws.dataset(ref)  # raises the usual "no dataset" error
        raise ModelError(f"dataset {ref!r} not found")
    content = row[1] or ws.dataset(f"{name}@{row[0]}").content_hash
    return f"{name}@{row[0]}", content


def _path(ws: Any, model_id: str, split: str, content: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model_id)[:80]
    tag = hashlib.sha256(model_id.encode()).hexdigest()[:8]
    return Path(ws.cache_dir) / "evaluations" / f"{safe}-{tag}" / f"{split}-{content[:40]}.json"


def _lock(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def stored_evaluation(
    ws: Any, ref: str, *, dataset: str | None = None, split: str = "test"
) -> dict[str, Any]:
    """The evaluation of model ``ref`` on ``split`` of its own dataset version (or
    ``dataset``): ``{"format", "model", "dataset", "split", "metrics", "ids", "true",
    "probs", "curves"}``; ``true`` holds label indexes per image, ``probs`` the model's
    probabilities in its label order. Computed once, then read from the cache."""
    from autovision.evaluation.predictions import resolve_dataset

    info = ws.model(ref)
    model_id = info["model"]
    ds_ref = dataset or f"{info['dataset']}@{info['dataset_version']}"
    if dataset is None:
        resolve_dataset(ws, info, None)  # the model's dataset must exist
    ds_ref, content = _dataset_hash(ws, ds_ref)
    path = _path(ws, model_id, split, content)
    key = str(path)
    if key in _memo:
        return _memo[key]
    aad = f"evaluation:{model_id}:{path.name}".encode()
    with _lock(key):
        found = _read(ws, path, aad)
        if found is None:
            found = _compute(ws, model_id, ds_ref, split)
            from autovision.security import crypto

            path.parent.mkdir(parents=True, exist_ok=True)
            data = json.dumps(found, allow_nan=False).encode()
            crypto.write_file(path, data, aad, ws.blobs.key)
    if len(_memo) >= _MEMO_SIZE:
        _memo.pop(next(iter(_memo)))
    _memo[key] = found
    return found


def _read(ws: Any, path: Path, aad: bytes) -> dict[str, Any] | None:
    from autovision.security import crypto

    if not path.exists():
        return None
    try:
        found = json.loads(crypto.read_file(path, aad, ws.blobs.key))
    except (ValueError, OSError):
        return None  # a damaged cache file is made again
    return found if found.get("format") == FORMAT else None


def _compute(ws: Any, model_id: str, ds_ref: str, split: str) -> dict[str, Any]:
    from autovision.evaluation.api import evaluate_predictions
    from autovision.evaluation.curves import pr_curves
    from autovision.evaluation.metrics import as_probs, indicator
    from autovision.evaluation.predictions import predict_split

    preds = predict_split(ws, model_id, split=split, dataset=ds_ref)
    metrics = evaluate_predictions(preds)
    Y = indicator(preds.true_labels, preds.labels)
    P = as_probs(preds.probs, len(preds.labels))
    index = {lab: j for j, lab in enumerate(preds.labels)}
    return {
        "format": FORMAT,
        "model": model_id,
        "dataset": ds_ref,
        "split": split,
        "metrics": metrics,
        "ids": [int(i) for i in preds.ids],
        "true": [[index[lab] for lab in labels] for labels in preds.true_labels],
        "probs": [[float(p) for p in row] for row in P],
        "curves": pr_curves(Y, P, preds.labels),
    }


def matrices(ev: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(Y, P): the 0/1 truth [N, L] and the probabilities [N, L] of a stored evaluation."""
    n_labels = len(ev["metrics"]["labels"])
    P = np.asarray(ev["probs"], dtype=np.float64).reshape(len(ev["ids"]), n_labels)
    Y = np.zeros(P.shape, dtype=np.int64)
    for i, labels in enumerate(ev["true"]):
        Y[i, labels] = 1
    return Y, P


def cell_ids(ev: dict[str, Any], true: str, pred: str) -> list[int]:
    """Image ids of one confusion-matrix cell, most confident in ``pred`` first.

    Single-label: true label ``true``, top label ``pred``. Multi-label (the metrics'
    definition): on the diagonal, the true positives of the label; off it, images where
    ``true`` was missed while ``pred`` was wrongly predicted.
    """
    from autovision.evaluation.metrics import predictions

    m = ev["metrics"]
    labels = m["labels"]
    if true not in labels or pred not in labels:
        raise ModelError(f"no label {true if true not in labels else pred!r} in {ev['model']}")
    i, j = labels.index(true), labels.index(pred)
    Y, P = matrices(ev)
    thresholds = list(m["thresholds"].values()) if m.get("thresholds") else None
    Yp = predictions(P, m["task"], thresholds)
    if m["task"] == "single-label" or i == j:
        hit = (Y[:, i] == 1) & (Yp[:, j] == 1)
    else:
        hit = (Y[:, i] == 1) & (Yp[:, i] == 0) & (Y[:, j] == 0) & (Yp[:, j] == 1)
    rows = np.flatnonzero(hit)
    rows = rows[np.argsort(-P[rows, j], kind="stable")]
    return [ev["ids"][r] for r in rows]


def slider_data(ev: dict[str, Any]) -> dict[str, Any]:
    """What the page's threshold slider computes from (embedded as JSON). Single-label:
    per image its true label, top label and top confidence; multi-label: the truth and
    every score (each label is thresholded on its own)."""
    m = ev["metrics"]
    out: dict[str, Any] = {"task": m["task"], "labels": m["labels"], "true": ev["true"]}
    if m["task"] == "single-label":
        P = np.asarray(ev["probs"], dtype=np.float64).reshape(len(ev["ids"]), len(m["labels"]))
        top = P.argmax(axis=1) if len(P) else np.zeros(0, dtype=int)
        out["pred"] = [int(j) for j in top]
        out["conf"] = [float(P[i, j]) for i, j in enumerate(top)]
    else:
        out["probs"] = ev["probs"]
    return out


def compare_versions(ws: Any, ref_a: str, ref_b: str, split: str = "test") -> dict[str, Any]:
    """Two versions measured on one split, that of the newer one's dataset version (as
    :func:`autovision.versions.compare.compare_on_split`), from stored evaluations: both
    summaries, per-label F1 of each and B minus A."""
    from autovision.evaluation.api import summary
    from autovision.versions import resolve
    from autovision.versions.compare import HEADLINE

    a, b = resolve(ws, ref_a), resolve(ws, ref_b)
    newer = max((a, b), key=lambda v: (v.created_at or "", v.version))
    dataset = f"{newer.dataset}@{newer.dataset_version}"
    evs = {side: stored_evaluation(ws, v.id, dataset=dataset, split=split) for side, v in
           (("a", a), ("b", b))}  # fmt: skip
    sums = {side: summary(ev["metrics"]) for side, ev in evs.items()}
    for s in sums.values():
        s.pop("metrics_path", None)
    diff = {
        k: sums["b"][k] - sums["a"][k]
        for k in (*HEADLINE, "macro_precision", "macro_recall", "micro_f1")
        if isinstance(sums["a"].get(k), int | float) and isinstance(sums["b"].get(k), int | float)
    }
    labels = list(dict.fromkeys(evs["a"]["metrics"]["labels"] + evs["b"]["metrics"]["labels"]))
    per_label = []
    for lab in labels:
        fa = evs["a"]["metrics"]["per_label"].get(lab, {}).get("f1")
        fb = evs["b"]["metrics"]["per_label"].get(lab, {}).get("f1")
        support = evs["b"]["metrics"]["per_label"].get(lab, {}).get("support")
        delta = fb - fa if fa is not None and fb is not None else None
        per_label.append({"label": lab, "support": support, "a": fa, "b": fb, "delta": delta})
    return {
        "a": {**a.to_dict(), "metrics": sums["a"]},
        "b": {**b.to_dict(), "metrics": sums["b"]},
        "dataset": dataset,
        "split": split,
        "difference": diff,
        "per_label": per_label,
    }


def item_sources(ws: Any, ev: dict[str, Any]) -> dict[int, str]:
    """Item id -> source (file name) of the evaluated images, in one query (by split:
    no list of ids in the SQL, however large the split)."""
    from sqlalchemy import select

    from autovision.data.dataset import parse_ref
    from autovision.workspace.db import DatasetRow, ItemRow, VersionRow

    name, version = parse_ref(ev["dataset"])
    with ws.Session() as s:
        rows = s.execute(
            select(ItemRow.item_id, ItemRow.source)
            .join(VersionRow, VersionRow.id == ItemRow.version_id)
            .join(DatasetRow, DatasetRow.id == VersionRow.dataset_id)
            .where(DatasetRow.name == name, VersionRow.version == version)
            .where(ItemRow.split == ev["split"])
        ).all()
    wanted = set(ev["ids"])
    return {int(i): src for i, src in rows if i in wanted}
