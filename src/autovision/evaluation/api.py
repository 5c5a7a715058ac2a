"""``evaluate``: a registered model judged on a held-out split, written beside the model."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autovision.evaluation.metrics import as_probs, compute_metrics, indicator
from autovision.evaluation.predictions import Progress, SplitPredictions, predict_split

METRICS_FILE = "metrics.json"


def evaluate(
    ws: Any,
    model_id: str,
    *,
    dataset: str | None = None,
    split: str = "test",
    report: str | os.PathLike[str] | None = None,
    slice_by: str | Sequence[str] | None = None,
    max_slice_gap: float | None = None,
    min_slice_support: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate ``model_id`` (an id, ``NAME``, ``NAME@N`` or ``NAME@ALIAS``) on ``split`` of
    its own dataset version (or ``dataset``).

    Writes ``metrics.json`` in the model directory, stores a summary as the model's
    ``test_metrics``, optionally writes an HTML report, refreshes the model card in the
    package and returns the full metrics. ``slice_by`` names metadata attributes (``"a,b"``)
    whose values are compared (:mod:`autovision.evaluation.slices`).
    """
    info = ws.model(model_id)  # resolve a version reference once: an alias may move meanwhile
    model_id = info["model"]
    preds = predict_split(ws, model_id, split=split, dataset=dataset, progress=progress)
    result = evaluate_predictions(
        preds, slice_by=slice_by, max_slice_gap=max_slice_gap, min_slice_support=min_slice_support
    )
    model_dir = Path(info["path"])
    metrics_path = model_dir / METRICS_FILE
    if report is not None:
        from autovision.evaluation.report import write_report
        from autovision.workspace.storage import is_remote, local_then_upload

        with local_then_upload(report) as report_path:  # a local file or an s3:// object
            write_report(report_path, result, preds, ws.load_image)
        result["report"] = os.fspath(report) if is_remote(os.fspath(report)) else str(report_path)
    result["metrics_path"] = str(metrics_path)
    _write_json(metrics_path, result)
    from autovision.cards import refresh_package_card
    from autovision.workspace.paths import to_stored

    stored = {**summary(result), "metrics_path": to_stored(ws.root, metrics_path)}
    ws.update_model_info(model_id, test_metrics=stored)  # no absolute path in the database
    refresh_package_card(ws, model_id)
    return result


def evaluate_predictions(
    preds: SplitPredictions,
    *,
    slice_by: str | Sequence[str] | None = None,
    max_slice_gap: float | None = None,
    min_slice_support: int | None = None,
) -> dict:
    """The metrics dict of ``evaluate`` from predictions already made."""
    metrics = compute_metrics(
        preds.true_labels,
        preds.probs,
        preds.labels,
        task=preds.task,
        thresholds=preds.thresholds,
        ids=preds.ids,
    )
    result: dict[str, Any] = {
        "model": preds.model_id,
        "dataset": preds.dataset.ref,
        "split": preds.split,
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "label_counts": _label_counts(preds),
        **metrics,
    }
    result["notes"] = preds.notes + metrics["notes"]
    if preds.split != "test":
        result["notes"].append(f"the {preds.split!r} split is not held out; only 'test' is")
    if slice_by:
        from autovision.evaluation import slices

        result["slices"] = slices.slice_attributes(
            indicator(preds.true_labels, preds.labels),
            as_probs(preds.probs, len(preds.labels)),
            [it.metadata for it in preds.items],
            slice_by,
            task=preds.task,
            labels=preds.labels,
            thresholds=preds.thresholds,
            max_gap=slices.MAX_GAP if max_slice_gap is None else max_slice_gap,
            min_support=slices.MIN_SUPPORT if min_slice_support is None else min_slice_support,
        )
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers kept in the model's info (``autovision models show``)."""
    keys = ["dataset", "split", "images", "accuracy", "top_k", "top_k_accuracy", "log_loss"]
    if result["task"] == "multi-label":
        keys += ["subset_accuracy", "hamming_loss"]
    out = {k: result.get(k) for k in keys}
    out |= {
        "macro_precision": result["macro"]["precision"],
        "macro_recall": result["macro"]["recall"],
        "macro_f1": result["macro"]["f1"],
        "micro_f1": result["micro"]["f1"],
        "roc_auc_macro": result["roc_auc"]["macro"],
        "average_precision_macro": result["average_precision"]["macro"],
        "ece": result["calibration"]["ece"],
        "evaluated_at": result["evaluated_at"],
        "metrics_path": result.get("metrics_path"),
    }
    if "slices" in result:
        out["slices_flagged"] = {k: s["flagged"] for k, s in result["slices"].items()}
    return out


def _label_counts(preds: SplitPredictions) -> dict[str, int]:
    counts = preds.dataset.label_counts(preds.items)
    return {lab: counts.get(lab, 0) for lab in preds.labels}


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
