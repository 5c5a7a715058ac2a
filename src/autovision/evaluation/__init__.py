"""Evaluation on a held-out split: metrics (scikit-learn), slices, predictions, HTML report.

``evaluate(ws, model_id)`` is the entry point; the CLI's ``autovision evaluate`` calls it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["compute_metrics", "evaluate", "predict_split", "write_split_predictions"]

if TYPE_CHECKING:
    from autovision.evaluation.api import evaluate
    from autovision.evaluation.metrics import compute_metrics
    from autovision.evaluation.predictions import predict_split, write_split_predictions

_WHERE = {
    "evaluate": "autovision.evaluation.api",
    "compute_metrics": "autovision.evaluation.metrics",
    "predict_split": "autovision.evaluation.predictions",
    "write_split_predictions": "autovision.evaluation.predictions",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'autovision.evaluation' has no attribute {name!r}")
